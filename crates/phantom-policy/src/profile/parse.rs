//! The profile DSL: the YAML tree of [`super::yaml`] checked and turned into a
//! [`Profile`]. Every error names the file, the line and column of the offending key or
//! value, and the field (`security.seccomp.allow[3]`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Capability, PosixRlimitType};

use super::yaml::{self, Key, Node, Pos, Value};
use super::{
    Action, ArgCondition, ArgOp, Mode, MountKind, MountSpec, NetworkMode, Profile, Resources,
    Rlimit, SeccompPolicy, SyscallRule,
};
use crate::landlock::{FsAccess, LandlockRules, NetAccess, PathRule, PortRule};
use crate::TargetArch;

/// Errors of reading and parsing profiles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A mistake in the profile, located.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no profile named {name:?} (built-in: {}; searched: {})", builtin.join(", "), searched_list(searched))]
    NotFound {
        name: String,
        builtin: Vec<&'static str>,
        searched: Vec<PathBuf>,
    },
}

fn searched_list(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no profile directory".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ProfileError {
    /// Line and column of a located error.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ProfileError::At { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ProfileError::At { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, ProfileError>;

/// Parses the DSL. `file` names the source in errors.
pub fn parse_profile(text: &str, file: &str) -> Result<Profile> {
    let p = Parser { file };
    let root = yaml::parse(text).map_err(|e| p.err_at(e.pos, e.message))?;
    let Some(root) = root else {
        return Err(p.err_at(
            Pos { line: 1, column: 1 },
            "the profile is empty; it needs at least `profile: NAME`".into(),
        ));
    };
    p.profile(&root)
}

struct Parser<'a> {
    file: &'a str,
}

/// The entries of a mapping, its keys checked against a list.
struct Fields<'n> {
    pos: Pos,
    entries: &'n [(Key, Node)],
    field: String,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k.pos)
    }

    fn sub(&self, key: &str) -> String {
        if self.field.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.field)
        }
    }
}

fn join(field: &str, i: usize) -> String {
    format!("{field}[{i}]")
}

impl Parser<'_> {
    fn err_at(&self, pos: Pos, message: String) -> ProfileError {
        ProfileError::At {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message,
        }
    }

    fn err(&self, node: &Node, field: &str, message: impl fmt::Display) -> ProfileError {
        self.err_at(node.pos, format!("{field}: {message}"))
    }

    fn wrong_type(&self, node: &Node, field: &str, expected: &str) -> ProfileError {
        self.err(
            node,
            field,
            format_args!("expected {expected}, found {}", node.kind()),
        )
    }

    /// A mapping whose keys are all in `allowed`.
    fn fields<'n>(&self, node: &'n Node, field: &str, allowed: &[&str]) -> Result<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            return Err(self.wrong_type(
                node,
                if field.is_empty() { "profile" } else { field },
                "a mapping",
            ));
        };
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                let at = if field.is_empty() {
                    "the top level".to_string()
                } else {
                    format!("`{field}`")
                };
                return Err(self.err_at(
                    k.pos,
                    format!(
                        "unknown key `{}` in {at} (expected one of: {})",
                        k.name,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(Fields {
            pos: node.pos,
            entries,
            field: field.to_string(),
        })
    }

    fn required<'n>(&self, f: &Fields<'n>, key: &str) -> Result<&'n Node> {
        f.get(key).ok_or_else(|| {
            let pos = f.key_pos(key).unwrap_or(f.pos);
            let what = if f.field.is_empty() {
                "the profile".to_string()
            } else {
                format!("`{}`", f.field)
            };
            self.err_at(pos, format!("{what} needs the key `{key}`"))
        })
    }

    fn string(&self, node: &Node, field: &str) -> Result<String> {
        match &node.value {
            Value::Scalar { text, .. } if !node.is_null() => Ok(text.clone()),
            _ => Err(self.wrong_type(node, field, "a string")),
        }
    }

    fn list<'n>(&self, node: &'n Node, field: &str) -> Result<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.wrong_type(node, field, "a list")),
        }
    }

    fn strings<'n>(&self, node: &'n Node, field: &str) -> Result<Vec<(String, &'n Node)>> {
        let items = self.list(node, field)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, n) in items.iter().enumerate() {
            out.push((self.string(n, &join(field, i))?, n));
        }
        Ok(out)
    }

    /// A plain (unquoted) scalar: numbers and booleans are never quoted.
    fn plain<'n>(&self, node: &'n Node, field: &str, expected: &str) -> Result<&'n str> {
        match &node.value {
            Value::Scalar { text, plain: true } if !node.is_null() => Ok(text),
            Value::Scalar { text, plain: false } => Err(self.err(
                node,
                field,
                format_args!("expected {expected}, found the quoted string {text:?}"),
            )),
            _ => Err(self.wrong_type(node, field, expected)),
        }
    }

    fn uint(&self, node: &Node, field: &str) -> Result<u64> {
        let text = self.plain(node, field, "a non-negative integer")?;
        parse_uint(text).ok_or_else(|| {
            self.err(
                node,
                field,
                format_args!(
                    "expected a non-negative integer (decimal, 0x, 0o or 0b), found {text:?}"
                ),
            )
        })
    }

    fn boolean(&self, node: &Node, field: &str) -> Result<bool> {
        match self.plain(node, field, "true or false")? {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(self.err(
                node,
                field,
                format_args!("expected true or false, found {other:?}"),
            )),
        }
    }

    /// A size: an integer number of bytes, or a number with a unit (`512MiB`, `1G`,
    /// `64k`; `KB`/`MB`/`GB` are powers of 1000).
    fn size(&self, node: &Node, field: &str) -> Result<u64> {
        let text = self.string(node, field)?;
        parse_size(&text).map_err(|why| self.err(node, field, why))
    }

    fn path(&self, node: &Node, field: &str) -> Result<PathBuf> {
        let text = self.string(node, field)?;
        check_path(&text).map_err(|why| self.err(node, field, why))?;
        Ok(PathBuf::from(text))
    }

    fn one_of<T: Copy>(
        &self,
        node: &Node,
        field: &str,
        parse: impl Fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Result<T> {
        let text = self.string(node, field)?;
        parse(&text).ok_or_else(|| {
            self.err(
                node,
                field,
                format_args!("{text:?} is not one of: {}", names.join(", ")),
            )
        })
    }

    fn profile(&self, root: &Node) -> Result<Profile> {
        let f = self.fields(
            root,
            "",
            &[
                "profile",
                "description",
                "mode",
                "command",
                "cwd",
                "host-system",
                "security",
                "resources",
                "network",
                "mounts",
                "env",
                "rlimits",
            ],
        )?;
        let name_node = self.required(&f, "profile")?;
        let name = self.string(name_node, "profile")?;
        check_name(&name).map_err(|why| self.err(name_node, "profile", why))?;
        let description = f
            .get("description")
            .map(|n| self.string(n, "description"))
            .transpose()?;
        let mode = match f.get("mode") {
            Some(n) => self.one_of(
                n,
                "mode",
                Mode::from_name,
                &["direct", "sandbox", "hardened"],
            )?,
            None => Mode::Sandbox,
        };
        let command = match f.get("command") {
            Some(n) => {
                let args = self.strings(n, "command")?;
                if args.is_empty() || args[0].0.is_empty() {
                    return Err(self.err(n, "command", "must name a program"));
                }
                Some(args.into_iter().map(|(s, _)| s).collect())
            }
            None => None,
        };
        let cwd = f.get("cwd").map(|n| self.path(n, "cwd")).transpose()?;
        let host_system = match f.get("host-system") {
            Some(n) => {
                let v = self.boolean(n, "host-system")?;
                if mode == Mode::Direct {
                    return Err(self.err(
                        n,
                        "host-system",
                        "direct mode always sees the host's filesystem",
                    ));
                }
                v
            }
            None => true,
        };

        let mut seccomp = None;
        let mut landlock = LandlockRules::default();
        let mut capabilities = Vec::new();
        if let Some(sec) = f.get("security") {
            let s = self.fields(sec, "security", &["seccomp", "landlock", "capabilities"])?;
            if let Some(n) = s.get("seccomp") {
                seccomp = Some(self.seccomp(n, "security.seccomp")?);
            }
            if let Some(n) = s.get("landlock") {
                landlock = self.landlock(n, "security.landlock")?;
            }
            if let Some(n) = s.get("capabilities") {
                capabilities = self.capabilities(n, "security.capabilities")?;
                if mode == Mode::Hardened && !capabilities.is_empty() {
                    return Err(self.err(
                        n,
                        "security.capabilities",
                        "a hardened profile keeps no capabilities",
                    ));
                }
            }
        }
        if mode == Mode::Hardened && seccomp.is_none() {
            let pos = f.key_pos("security").unwrap_or(f.pos);
            return Err(self.err_at(
                pos,
                "mode hardened needs a `security.seccomp` section".into(),
            ));
        }
        let resources = match f.get("resources") {
            Some(n) => self.resources(n)?,
            None => Resources::default(),
        };
        let (network, egress) = match f.get("network") {
            Some(n) => self.network(n)?,
            None => (NetworkMode::None, Default::default()),
        };
        if network == NetworkMode::Egress && mode == Mode::Hardened {
            let n = f.get("network").expect("network was given");
            return Err(self.err(
                n,
                "network.mode",
                "egress is not supported in hardened mode yet (its user namespace cannot join \
                 the network namespace phantom prepares)",
            ));
        }
        if network == NetworkMode::Host && mode == Mode::Hardened {
            let n = f.get("network").expect("network was given");
            return Err(self.err(
                n,
                "network.mode",
                "a hardened profile cannot use the host's network",
            ));
        }
        let mounts = match f.get("mounts") {
            Some(n) => self.mounts(n)?,
            None => Vec::new(),
        };
        if mode == Mode::Direct {
            if let Some(n) = f.get("mounts").filter(|_| !mounts.is_empty()) {
                return Err(self.err(
                    n,
                    "mounts",
                    "direct mode has no mount namespace, so no mounts",
                ));
            }
            if network != NetworkMode::Host {
                let pos = f.key_pos("network").unwrap_or(f.pos);
                return Err(self.err_at(
                    pos,
                    "network.mode: direct mode has no network namespace; it needs `network: { mode: host }`"
                        .into(),
                ));
            }
        }
        let env = match f.get("env") {
            Some(n) => self.env(n)?,
            None => Vec::new(),
        };
        let rlimits = match f.get("rlimits") {
            Some(n) => self.rlimits(n)?,
            None => Vec::new(),
        };
        Ok(Profile {
            name,
            description,
            mode,
            command,
            cwd,
            host_system,
            seccomp,
            landlock,
            capabilities,
            resources,
            network,
            egress,
            mounts,
            env,
            rlimits,
        })
    }

    fn action(&self, node: &Node, field: &str, errno: Option<(&Node, String)>) -> Result<Action> {
        let name = self.string(node, field)?;
        let action = match name.as_str() {
            "allow" => Action::Allow,
            "errno" => Action::Errno(libc::EPERM as u16),
            "kill-process" | "kill" => Action::KillProcess,
            "kill-thread" => Action::KillThread,
            "trap" => Action::Trap,
            "log" => Action::Log,
            _ => {
                return Err(self.err(
                    node,
                    field,
                    format_args!(
                        "{name:?} is not an action (allow, errno, kill-process, kill-thread, trap, log)"
                    ),
                ))
            }
        };
        match (action, errno) {
            (Action::Errno(_), Some((n, f))) => Ok(Action::Errno(self.errno(n, &f)?)),
            (Action::Errno(_), None) => Ok(action),
            (_, Some((n, f))) => Err(self.err(
                n,
                &f,
                format_args!("only the errno action takes an errno, not {name}"),
            )),
            (a, None) => Ok(a),
        }
    }

    fn errno(&self, node: &Node, field: &str) -> Result<u16> {
        let text = self.string(node, field)?;
        let value = match parse_uint(&text) {
            Some(v) => v,
            None => errno_value(&text).ok_or_else(|| {
                self.err(
                    node,
                    field,
                    format_args!(
                        "{text:?} is not an errno name (EPERM, ENOSYS, EACCES, ...) or number"
                    ),
                )
            })?,
        };
        if !(1..=4095).contains(&value) {
            return Err(self.err(
                node,
                field,
                format_args!(
                    "errno {value} is out of range (1 to 4095; 0 would make the call succeed)"
                ),
            ));
        }
        Ok(value as u16)
    }

    fn seccomp(&self, node: &Node, field: &str) -> Result<SeccompPolicy> {
        let f = self.fields(
            node,
            field,
            &[
                "default",
                "errno",
                "allow",
                "deny",
                "deny-action",
                "deny-errno",
                "rules",
            ],
        )?;
        let errno_of = |key: &str| f.get(key).map(|n| (n, f.sub(key)));
        let default = match f.get("default") {
            Some(n) => self.action(n, &f.sub("default"), errno_of("errno"))?,
            None => match errno_of("errno") {
                Some((n, fe)) => Action::Errno(self.errno(n, &fe)?),
                None => Action::Errno(libc::EPERM as u16),
            },
        };
        let deny_action = match f.get("deny-action") {
            Some(n) => self.action(n, &f.sub("deny-action"), errno_of("deny-errno"))?,
            None => match errno_of("deny-errno") {
                Some((n, fe)) => Action::Errno(self.errno(n, &fe)?),
                None => Action::Errno(libc::EPERM as u16),
            },
        };

        // Where each syscall is first named, to refuse contradictions.
        let mut seen: HashMap<String, (Pos, &'static str)> = HashMap::new();
        let mut names_of = |list: &str, kind: &'static str| -> Result<Vec<String>> {
            let Some(n) = f.get(list) else {
                return Ok(Vec::new());
            };
            let field = f.sub(list);
            let mut out = Vec::new();
            for (i, (name, item)) in self.strings(n, &field)?.into_iter().enumerate() {
                let field = join(&field, i);
                self.syscall_name(&name, item, &field)?;
                if let Some((first, what)) = seen.get(&name) {
                    return Err(self.err(
                        item,
                        &field,
                        format_args!(
                            "{name} is already in the {what} list (line {}, column {})",
                            first.line, first.column
                        ),
                    ));
                }
                seen.insert(name.clone(), (item.pos, kind));
                out.push(name);
            }
            Ok(out)
        };
        let allow = names_of("allow", "allow")?;
        let deny = names_of("deny", "deny")?;

        let mut rules = Vec::new();
        if let Some(n) = f.get("rules") {
            let field = f.sub("rules");
            // Per syscall: position of its rule without arguments, if any.
            let mut unconditional: HashMap<String, Pos> = HashMap::new();
            let mut conditional: HashMap<String, Pos> = HashMap::new();
            for (i, item) in self.list(n, &field)?.iter().enumerate() {
                let field = join(&field, i);
                let rule = self.rule(item, &field)?;
                for name in &rule.names {
                    if let Some((first, what)) = seen.get(name) {
                        return Err(self.err(
                            item,
                            &field,
                            format_args!(
                                "{name} is in the {what} list (line {}, column {}), which would \
                                 override this rule",
                                first.line, first.column
                            ),
                        ));
                    }
                    let clash = if rule.args.is_empty() {
                        unconditional.get(name).or_else(|| conditional.get(name))
                    } else {
                        unconditional.get(name)
                    };
                    if let Some(first) = clash {
                        return Err(self.err(
                            item,
                            &field,
                            format_args!(
                                "{name} already has a rule at line {}, column {}; a rule without \
                                 `args` must be the only rule of its syscall",
                                first.line, first.column
                            ),
                        ));
                    }
                    let map = if rule.args.is_empty() {
                        &mut unconditional
                    } else {
                        &mut conditional
                    };
                    map.entry(name.clone()).or_insert(item.pos);
                }
                rules.push(rule);
            }
        }
        Ok(SeccompPolicy {
            default,
            allow,
            deny,
            deny_action,
            rules,
        })
    }

    fn syscall_name(&self, name: &str, node: &Node, field: &str) -> Result<()> {
        if TargetArch::X86_64.syscall_nr(name).is_none()
            && TargetArch::Aarch64.syscall_nr(name).is_none()
        {
            return Err(self.err(
                node,
                field,
                format_args!("{name:?} is not a syscall on x86_64 or aarch64"),
            ));
        }
        Ok(())
    }

    fn rule(&self, node: &Node, field: &str) -> Result<SyscallRule> {
        let f = self.fields(
            node,
            field,
            &["syscall", "syscalls", "action", "errno", "args"],
        )?;
        let names = match (f.get("syscall"), f.get("syscalls")) {
            (Some(n), None) => {
                let field = f.sub("syscall");
                let name = self.string(n, &field)?;
                self.syscall_name(&name, n, &field)?;
                vec![name]
            }
            (None, Some(n)) => {
                let field = f.sub("syscalls");
                let names = self.strings(n, &field)?;
                if names.is_empty() {
                    return Err(self.err(n, &field, "names no syscall"));
                }
                let mut out: Vec<String> = Vec::new();
                for (i, (name, item)) in names.into_iter().enumerate() {
                    let field = join(&field, i);
                    self.syscall_name(&name, item, &field)?;
                    if out.contains(&name) {
                        return Err(self.err(item, &field, format_args!("{name} is listed twice")));
                    }
                    out.push(name);
                }
                out
            }
            (Some(_), Some(n)) => {
                return Err(self.err(
                    n,
                    &f.sub("syscalls"),
                    "give either `syscall` or `syscalls`, not both",
                ))
            }
            (None, None) => {
                return Err(self.err_at(
                    f.pos,
                    format!("{field}: a rule needs `syscall: NAME` or `syscalls: [NAMES]`"),
                ))
            }
        };
        let action_node = self.required(&f, "action")?;
        let action = self.action(
            action_node,
            &f.sub("action"),
            f.get("errno").map(|n| (n, f.sub("errno"))),
        )?;
        let mut args = Vec::new();
        if let Some(n) = f.get("args") {
            let field = f.sub("args");
            let items = self.list(n, &field)?;
            if items.is_empty() {
                return Err(self.err(
                    n,
                    &field,
                    "is empty; leave it out for a rule without conditions",
                ));
            }
            for (i, item) in items.iter().enumerate() {
                args.push(self.arg(item, &join(&field, i))?);
            }
        }
        Ok(SyscallRule {
            names,
            action,
            args,
        })
    }

    fn arg(&self, node: &Node, field: &str) -> Result<ArgCondition> {
        let f = self.fields(node, field, &["index", "op", "value", "mask"])?;
        let index_node = self.required(&f, "index")?;
        let index = self.uint(index_node, &f.sub("index"))?;
        if index > 5 {
            return Err(self.err(
                index_node,
                &f.sub("index"),
                format_args!("{index} is out of range (a syscall has arguments 0 to 5)"),
            ));
        }
        let op_node = self.required(&f, "op")?;
        let op_name = self.string(op_node, &f.sub("op"))?;
        let value = self.uint(self.required(&f, "value")?, &f.sub("value"))?;
        let mask = match f.get("mask") {
            Some(n) => Some((n, self.uint(n, &f.sub("mask"))?)),
            None => None,
        };
        let op = match op_name.as_str() {
            "eq" => ArgOp::Eq,
            "ne" => ArgOp::Ne,
            "lt" => ArgOp::Lt,
            "le" => ArgOp::Le,
            "gt" => ArgOp::Gt,
            "ge" => ArgOp::Ge,
            "masked-eq" => match mask {
                Some((_, m)) => {
                    if value & !m != 0 {
                        return Err(self.err(
                            self.required(&f, "value")?,
                            &f.sub("value"),
                            format_args!(
                                "{value:#x} has bits outside the mask {m:#x}, so it can never match"
                            ),
                        ));
                    }
                    ArgOp::MaskedEq(m)
                }
                None => {
                    return Err(self.err_at(f.pos, format!("{field}: op masked-eq needs a `mask`")))
                }
            },
            other => {
                return Err(self.err(
                    op_node,
                    &f.sub("op"),
                    format_args!(
                        "{other:?} is not an operator (eq, ne, lt, le, gt, ge, masked-eq)"
                    ),
                ))
            }
        };
        if let (Some((n, _)), false) = (mask, matches!(op, ArgOp::MaskedEq(_))) {
            return Err(self.err(n, &f.sub("mask"), "only op masked-eq takes a mask"));
        }
        Ok(ArgCondition {
            index: index as u8,
            op,
            value,
        })
    }

    fn landlock(&self, node: &Node, field: &str) -> Result<LandlockRules> {
        let mut rules = LandlockRules::default();
        let mut seen_paths: HashMap<PathBuf, Pos> = HashMap::new();
        let mut seen_ports: HashMap<u16, Pos> = HashMap::new();
        for (i, item) in self.list(node, field)?.iter().enumerate() {
            let field = join(field, i);
            let f = self.fields(item, &field, &["path", "port", "access"])?;
            let access_node = self.required(&f, "access")?;
            match (f.get("path"), f.get("port")) {
                (Some(p), None) => {
                    let path = self.path(p, &f.sub("path"))?;
                    let access = self.one_of(
                        access_node,
                        &f.sub("access"),
                        FsAccess::from_name,
                        &FsAccess::ALL.map(FsAccess::name),
                    )?;
                    if let Some(first) = seen_paths.get(&path) {
                        return Err(self.err(
                            p,
                            &f.sub("path"),
                            format_args!(
                                "{} already has a rule (line {}, column {})",
                                path.display(),
                                first.line,
                                first.column
                            ),
                        ));
                    }
                    seen_paths.insert(path.clone(), p.pos);
                    rules.paths.push(PathRule { path, access });
                }
                (None, Some(p)) => {
                    let port = self.uint(p, &f.sub("port"))?;
                    let port = u16::try_from(port).map_err(|_| {
                        self.err(
                            p,
                            &f.sub("port"),
                            format_args!("{port} is not a TCP port (0 to 65535)"),
                        )
                    })?;
                    let access = self.one_of(
                        access_node,
                        &f.sub("access"),
                        NetAccess::from_name,
                        &NetAccess::ALL.map(NetAccess::name),
                    )?;
                    if let Some(first) = seen_ports.get(&port) {
                        return Err(self.err(
                            p,
                            &f.sub("port"),
                            format_args!(
                                "port {port} already has a rule (line {}, column {})",
                                first.line, first.column
                            ),
                        ));
                    }
                    seen_ports.insert(port, p.pos);
                    rules.ports.push(PortRule { port, access });
                }
                (Some(_), Some(p)) => {
                    return Err(self.err(
                        p,
                        &f.sub("port"),
                        "a rule is either for a `path` or for a `port`, not both",
                    ))
                }
                (None, None) => {
                    return Err(self.err_at(
                        f.pos,
                        format!(
                            "{field}: a rule needs `path` (with access) or `port` (with access)"
                        ),
                    ))
                }
            }
        }
        Ok(rules)
    }

    fn capabilities(&self, node: &Node, field: &str) -> Result<Vec<Capability>> {
        let mut out = Vec::new();
        for (i, (name, item)) in self.strings(node, field)?.into_iter().enumerate() {
            let field = join(field, i);
            let upper = name.to_ascii_uppercase();
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            let cap = serde_json::from_value::<Capability>(serde_json::Value::String(full.clone()))
                .map_err(|_| {
                    self.err(item, &field, format_args!("{name:?} is not a capability"))
                })?;
            if out.contains(&cap) {
                return Err(self.err(item, &field, format_args!("{full} is listed twice")));
            }
            out.push(cap);
        }
        Ok(out)
    }

    fn resources(&self, node: &Node) -> Result<Resources> {
        let f = self.fields(
            node,
            "resources",
            &["memory", "cpu", "pids", "tmp", "shm", "workspace"],
        )?;
        let mut r = Resources::default();
        if let Some(n) = f.get("memory") {
            let v = self.size(n, "resources.memory")?;
            if v < 1 << 20 {
                return Err(self.err(
                    n,
                    "resources.memory",
                    format_args!("{v} bytes is too little to start a process (at least 1MiB)"),
                ));
            }
            r.memory = Some(v);
        }
        if let Some(n) = f.get("cpu") {
            let text = self.plain(n, "resources.cpu", "a number of CPUs")?;
            let v: f64 = text.parse().map_err(|_| {
                self.err(
                    n,
                    "resources.cpu",
                    format_args!("expected a number of CPUs (like 1.5), found {text:?}"),
                )
            })?;
            if !v.is_finite() || !(0.01..=1024.0).contains(&v) {
                return Err(self.err(
                    n,
                    "resources.cpu",
                    format_args!("{text} is not a possible CPU share (0.01 to 1024)"),
                ));
            }
            r.cpu = Some(v);
        }
        if let Some(n) = f.get("pids") {
            let v = self.uint(n, "resources.pids")?;
            if v == 0 || v > i64::MAX as u64 {
                return Err(self.err(
                    n,
                    "resources.pids",
                    format_args!("{v} is not a possible process count (at least 1)"),
                ));
            }
            r.pids = Some(v as i64);
        }
        for (key, slot) in [
            ("tmp", &mut r.tmp),
            ("shm", &mut r.shm),
            ("workspace", &mut r.workspace),
        ] {
            if let Some(n) = f.get(key) {
                let field = format!("resources.{key}");
                let v = self.size(n, &field)?;
                if v < 4096 {
                    return Err(self.err(
                        n,
                        &field,
                        format_args!("{v} bytes is smaller than one page (4KiB)"),
                    ));
                }
                *slot = Some(v);
            }
        }
        Ok(r)
    }

    fn network(&self, node: &Node) -> Result<(NetworkMode, crate::egress::EgressRules)> {
        let f = self.fields(node, "network", &["mode", "allow", "allow-cidr"])?;
        let n = self.required(&f, "mode")?;
        let mode = self.one_of(
            n,
            "network.mode",
            NetworkMode::from_name,
            &["none", "loopback", "egress", "host"],
        )?;
        let mut rules = crate::egress::EgressRules::default();
        for (key, cidr) in [("allow", false), ("allow-cidr", true)] {
            let Some(list) = f.get(key) else { continue };
            let field = format!("network.{key}");
            if mode != NetworkMode::Egress {
                return Err(self.err(list, &field, "only `mode: egress` takes allowlists"));
            }
            for (text, item) in self.strings(list, &field)? {
                let parsed = if cidr {
                    text.parse().map(|c| rules.allow_cidr.push(c))
                } else {
                    text.parse().map(|r| rules.allow.push(r))
                };
                if let Err(e) = parsed {
                    return Err(self.err(item, &field, e.to_string()));
                }
            }
        }
        Ok((mode, rules))
    }

    fn mounts(&self, node: &Node) -> Result<Vec<MountSpec>> {
        let mut out: Vec<MountSpec> = Vec::new();
        let mut seen: HashMap<PathBuf, Pos> = HashMap::new();
        for (i, item) in self.list(node, "mounts")?.iter().enumerate() {
            let field = join("mounts", i);
            let f = self.fields(
                item,
                &field,
                &["source", "target", "type", "access", "size", "optional"],
            )?;
            let target_node = self.required(&f, "target")?;
            let target = self.path(target_node, &f.sub("target"))?;
            if target == Path::new("/") {
                return Err(self.err(target_node, &f.sub("target"), "cannot mount over /"));
            }
            if let Some(first) = seen.get(&target) {
                return Err(self.err(
                    target_node,
                    &f.sub("target"),
                    format_args!(
                        "{} is already mounted (line {}, column {})",
                        target.display(),
                        first.line,
                        first.column
                    ),
                ));
            }
            seen.insert(target.clone(), target_node.pos);
            let kind = match f.get("type") {
                Some(n) => {
                    let t = self.string(n, &f.sub("type"))?;
                    match t.as_str() {
                        "bind" | "tmpfs" => t,
                        _ => {
                            return Err(self.err(
                                n,
                                &f.sub("type"),
                                format_args!("{t:?} is not a mount type (bind, tmpfs)"),
                            ))
                        }
                    }
                }
                None if f.get("source").is_some() => "bind".into(),
                None => "tmpfs".into(),
            };
            let optional = f
                .get("optional")
                .map(|n| self.boolean(n, &f.sub("optional")))
                .transpose()?
                .unwrap_or(false);
            let kind = if kind == "bind" {
                let source = self.path(self.required(&f, "source")?, &f.sub("source"))?;
                if let Some(n) = f.get("size") {
                    return Err(self.err(n, &f.sub("size"), "only a tmpfs mount has a size"));
                }
                let writable = match f.get("access") {
                    Some(n) => match self.string(n, &f.sub("access"))?.as_str() {
                        "read-only" => false,
                        "read-write" => true,
                        other => {
                            return Err(self.err(
                                n,
                                &f.sub("access"),
                                format_args!("{other:?} is not one of: read-only, read-write"),
                            ))
                        }
                    },
                    None => false,
                };
                MountKind::Bind { source, writable }
            } else {
                for key in ["source", "access"] {
                    if let Some(n) = f.get(key) {
                        return Err(self.err(
                            n,
                            &f.sub(key),
                            "a tmpfs mount takes no source or access (it is always writable)",
                        ));
                    }
                }
                let size = f
                    .get("size")
                    .map(|n| self.size(n, &f.sub("size")))
                    .transpose()?;
                if let (Some(n), Some(v)) = (f.get("size"), size) {
                    if v < 4096 {
                        return Err(self.err(
                            n,
                            &f.sub("size"),
                            format_args!("{v} bytes is smaller than one page (4KiB)"),
                        ));
                    }
                }
                MountKind::Tmpfs { size }
            };
            out.push(MountSpec {
                target,
                kind,
                optional,
            });
        }
        Ok(out)
    }

    fn env(&self, node: &Node) -> Result<Vec<(String, String)>> {
        let Value::Map(entries) = &node.value else {
            return Err(self.wrong_type(node, "env", "a mapping of NAME: value"));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let field = format!("env.{}", k.name);
            if k.name.is_empty() || k.name.contains('=') || k.name.contains('\0') {
                return Err(self.err_at(k.pos, format!("env: {:?} is not a variable name", k.name)));
            }
            let value = match &v.value {
                Value::Scalar { .. } if v.is_null() => String::new(),
                Value::Scalar { text, .. } => text.clone(),
                _ => return Err(self.wrong_type(v, &field, "a string")),
            };
            if value.contains('\0') {
                return Err(self.err(v, &field, "contains a NUL byte"));
            }
            out.push((k.name.clone(), value));
        }
        Ok(out)
    }

    fn rlimits(&self, node: &Node) -> Result<Vec<Rlimit>> {
        let Value::Map(entries) = &node.value else {
            return Err(self.wrong_type(node, "rlimits", "a mapping of NAME: limit"));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let field = format!("rlimits.{}", k.name);
            let kind = rlimit_kind(&k.name).ok_or_else(|| {
                self.err_at(
                    k.pos,
                    format!(
                        "rlimits: unknown resource `{}` (expected one of: {})",
                        k.name,
                        RLIMITS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            // "unlimited", an integer (0 included) or a size with a unit.
            let limit = |n: &Node, field: &str| -> Result<u64> {
                let text = self.string(n, field)?;
                if text == "unlimited" {
                    return Ok(u64::MAX);
                }
                if let Some(v) = parse_uint(&text) {
                    return Ok(v);
                }
                parse_size(&text).map_err(|_| {
                    self.err(
                        n,
                        field,
                        format_args!(
                            "expected a number, a size (64MiB) or unlimited, found {text:?}"
                        ),
                    )
                })
            };
            let (soft, hard) = match &v.value {
                Value::Map(_) => {
                    let f = self.fields(v, &field, &["soft", "hard"])?;
                    let soft_node = self.required(&f, "soft")?;
                    let soft = limit(soft_node, &f.sub("soft"))?;
                    let hard = limit(self.required(&f, "hard")?, &f.sub("hard"))?;
                    if soft > hard {
                        return Err(self.err(
                            soft_node,
                            &f.sub("soft"),
                            format_args!("the soft limit {soft} is above the hard limit {hard}"),
                        ));
                    }
                    (soft, hard)
                }
                _ => {
                    let l = limit(v, &field)?;
                    (l, l)
                }
            };
            out.push(Rlimit { kind, soft, hard });
        }
        Ok(out)
    }
}

use std::fmt;

const RLIMITS: &[(&str, PosixRlimitType)] = &[
    ("as", PosixRlimitType::RlimitAs),
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
];

fn rlimit_kind(name: &str) -> Option<PosixRlimitType> {
    RLIMITS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// The DSL name of an rlimit.
pub fn rlimit_name(kind: PosixRlimitType) -> &'static str {
    RLIMITS
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a profile name (1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit)"
        ))
    }
}

fn check_path(p: &str) -> std::result::Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} is not an absolute path"));
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if Path::new(p)
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("{p:?} contains `.` or `..`"));
    }
    Ok(())
}

fn parse_uint(text: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(o) = text.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = text.strip_prefix("0b") {
        (b, 2)
    } else {
        (text, 10)
    };
    if digits.is_empty() || digits.starts_with('+') {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A size as profiles write it (`512MiB`, `1G`, `1048576`): the tree's one
/// reading ([`crate::units::parse_size`]), its error as text.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    crate::units::parse_size(text).map_err(|e| e.to_string())
}

const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK),
    ("EPIPE", libc::EPIPE),
    ("ERANGE", libc::ERANGE),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTSUP", libc::ENOTSUP),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNREFUSED", libc::ECONNREFUSED),
];

fn errno_value(name: &str) -> Option<u64> {
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as u64)
}

/// The name of an errno value, if it has one in the DSL's table.
pub fn errno_name(v: u16) -> Option<&'static str> {
    ERRNOS
        .iter()
        .find(|(_, e)| *e == i32::from(v))
        .map(|(n, _)| *n)
}
