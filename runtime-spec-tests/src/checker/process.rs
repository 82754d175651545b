//! Checks of `process`, UTS, sysctl, namespaces, id mappings and seccomp.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::fs;

use serde_json::Value;

use super::Env;
use crate::caps::{self, Sets};
use crate::outcome::Outcome;
use crate::procfs::{self, status_field};

fn not_set(field: &str) -> Outcome {
    Outcome::Skip(format!("{field} is not set in config.json"))
}

/// `hostname` / `domainname` against uname(2).
pub fn uts(env: &Env, field: &str) -> Outcome {
    let Some(want) = env.spec_at(&format!("/{field}")).and_then(Value::as_str) else {
        return not_set(field);
    };
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Outcome::Fail(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let raw = if field == "hostname" {
        &u.nodename[..]
    } else {
        &u.domainname[..]
    };
    // SAFETY: uname NUL-terminates each field within its array.
    let got = unsafe { CStr::from_ptr(raw.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Outcome::check(got == want, || format!("want {want:?}, got {got:?}"))
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn args(env: &Env) -> Outcome {
    let want = str_list(env.spec_at("/process/args"));
    let got: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Outcome::check(want == got, || format!("want {want:?}, got {got:?}"))
}

/// Every configured variable has exactly its value; nothing else is set but
/// `HOME`, which runc documents adding when the config lacks it.
pub fn environment(env: &Env) -> Outcome {
    let want = str_list(env.spec_at("/process/env"));
    let got: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    let mut problems = Vec::new();
    for w in &want {
        if !got.contains(w) {
            let key = w.split('=').next().unwrap_or(w);
            let have = got
                .iter()
                .find(|g| g.split('=').next() == Some(key))
                .map_or_else(|| "nothing".to_owned(), |g| format!("{g:?}"));
            problems.push(format!("want {w:?}, got {have}"));
        }
    }
    let want_keys: BTreeSet<&str> = want.iter().filter_map(|w| w.split('=').next()).collect();
    for g in &got {
        let key = g.split('=').next().unwrap_or(g);
        if !want_keys.contains(key) && key != "HOME" {
            problems.push(format!("unexpected {g:?}"));
        }
    }
    Outcome::from_problems(problems)
}

pub fn cwd(env: &Env) -> Outcome {
    let Some(want) = env.spec_at("/process/cwd").and_then(Value::as_str) else {
        return not_set("process.cwd");
    };
    match std::env::current_dir() {
        Ok(p) => {
            let got = p.to_string_lossy().into_owned();
            Outcome::check(procfs::normalize(&got) == procfs::normalize(want), || {
                format!("want {want:?}, got {got:?}")
            })
        }
        Err(e) => Outcome::Fail(format!("getcwd: {e}")),
    }
}

/// `Uid:`/`Gid:` of /proc/self/status: real, effective, saved and fs ids.
pub fn ids(env: &Env, field: &str, ptr: &str) -> Outcome {
    let want = env.spec_at(ptr).and_then(Value::as_u64).unwrap_or(0);
    let Some(line) = status_field(&env.status, field) else {
        return Outcome::Fail(format!("no {field} in /proc/self/status"));
    };
    let got: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Outcome::check(got.len() == 4 && got.iter().all(|g| *g == want), || {
        format!("want {want} (real, effective, saved, fs), got {line}")
    })
}

pub fn groups(env: &Env) -> Outcome {
    let want: BTreeSet<u64> = env
        .spec_at("/process/user/additionalGids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let line = status_field(&env.status, "Groups").unwrap_or("");
    let got: BTreeSet<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Outcome::check(want == got, || format!("want {want:?}, got {got:?}"))
}

pub fn umask(env: &Env) -> Outcome {
    let Some(want) = env.spec_at("/process/user/umask").and_then(Value::as_u64) else {
        return not_set("process.user.umask");
    };
    let Some(got) = status_field(&env.status, "Umask").and_then(|s| u64::from_str_radix(s, 8).ok())
    else {
        return Outcome::Fail("no Umask in /proc/self/status".into());
    };
    Outcome::check(want == got, || format!("want {want:04o}, got {got:04o}"))
}

fn cap_set(env: &Env, set: &str) -> Result<u64, String> {
    let names = str_list(env.spec_at(&format!("/process/capabilities/{set}")));
    let (m, unknown) = caps::mask(names.iter().map(String::as_str));
    if unknown.is_empty() {
        Ok(m)
    } else {
        Err(format!("unknown capabilities {unknown:?}"))
    }
}

/// One of the five capability sets, as the kernel leaves it after execve
/// of the checker (see [`Sets::after_exec`]).
pub fn capabilities(env: &Env, set: &str) -> Outcome {
    if env.spec_at("/process/capabilities").is_none() {
        return not_set("process.capabilities");
    }
    let sets = (|| {
        Ok::<_, String>(Sets {
            bounding: cap_set(env, "bounding")?,
            effective: cap_set(env, "effective")?,
            permitted: cap_set(env, "permitted")?,
            inheritable: cap_set(env, "inheritable")?,
            ambient: cap_set(env, "ambient")?,
        })
    })();
    let sets = match sets {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(e),
    };
    let nnp = env
        .spec_at("/process/noNewPrivileges")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let after = sets.after_exec(env.uid(), nnp);
    let (field, want, configured) = match set {
        "bounding" => ("CapBnd", after.bounding, sets.bounding),
        "effective" => ("CapEff", after.effective, sets.effective),
        "permitted" => ("CapPrm", after.permitted, sets.permitted),
        "inheritable" => ("CapInh", after.inheritable, sets.inheritable),
        "ambient" => ("CapAmb", after.ambient, sets.ambient),
        _ => return Outcome::Fail(format!("unknown capability set {set}")),
    };
    let Some(got) = status_field(&env.status, field).and_then(|h| u64::from_str_radix(h, 16).ok())
    else {
        return Outcome::Fail(format!("no {field} in /proc/self/status"));
    };
    Outcome::check(got == want, || {
        let mut r = format!(
            "{field} {got:016x}, want {want:016x}: {}",
            caps::diff(want, got)
        );
        if want != configured {
            r.push_str(" (want = the configured set as execve transforms it)");
        }
        r
    })
}

pub fn no_new_privs(env: &Env) -> Outcome {
    let want = env
        .spec_at("/process/noNewPrivileges")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let got = status_field(&env.status, "NoNewPrivs") == Some("1");
    Outcome::check(got == want, || {
        format!("NoNewPrivs is {}, want {}", got as u8, want as u8)
    })
}

/// The libc resource number of an `RLIMIT_*` name.
fn rlimit_resource(name: &str) -> Option<i32> {
    let r = match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    };
    #[allow(clippy::unnecessary_cast)]
    Some(r as i32)
}

fn getrlimit(resource: i32) -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit; the resource number comes
    // from libc's own constants. The cast matches glibc's enum parameter
    // type and musl's int.
    if unsafe { libc::getrlimit(resource as _, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)]
    Ok((u64::from(r.rlim_cur), u64::from(r.rlim_max)))
}

pub fn rlimits(env: &Env) -> Outcome {
    let Some(list) = env.spec_at("/process/rlimits").and_then(Value::as_array) else {
        return not_set("process.rlimits");
    };
    let mut problems = Vec::new();
    for rl in list {
        let name = rl.get("type").and_then(Value::as_str).unwrap_or("?");
        let soft = rl.get("soft").and_then(Value::as_u64).unwrap_or(0);
        let hard = rl.get("hard").and_then(Value::as_u64).unwrap_or(0);
        let Some(res) = rlimit_resource(name) else {
            problems.push(format!("{name}: unknown rlimit"));
            continue;
        };
        match getrlimit(res) {
            Ok((s, h)) if s == soft && h == hard => {}
            Ok((s, h)) => problems.push(format!("{name}: want {soft}/{hard}, got {s}/{h}")),
            Err(e) => problems.push(format!("{name}: getrlimit: {e}")),
        }
    }
    Outcome::from_problems(problems)
}

pub fn oom_score_adj(env: &Env) -> Outcome {
    let Some(want) = env.spec_at("/process/oomScoreAdj").and_then(Value::as_i64) else {
        return not_set("process.oomScoreAdj");
    };
    match fs::read_to_string("/proc/self/oom_score_adj") {
        Ok(t) => {
            let got = t.trim();
            Outcome::check(got == want.to_string(), || {
                format!("want {want}, got {got}")
            })
        }
        Err(e) => Outcome::Fail(format!("read /proc/self/oom_score_adj: {e}")),
    }
}

fn terminal_wanted(env: &Env) -> bool {
    env.spec_at("/process/terminal")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub fn terminal(env: &Env) -> Outcome {
    let want = terminal_wanted(env);
    // SAFETY: isatty only inspects the descriptor number.
    let got: Vec<bool> = (0..3).map(|fd| unsafe { libc::isatty(fd) } == 1).collect();
    Outcome::check(got.iter().all(|g| *g == want), || {
        format!("isatty(0,1,2) = {got:?}, want all {want}")
    })
}

/// With a terminal, /dev/console is the process's pseudoterminal
/// (config-linux.md, "Default Devices").
pub fn console(env: &Env) -> Outcome {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !terminal_wanted(env) {
        return Outcome::Skip("process.terminal is false: no /dev/console required".into());
    }
    let console = match fs::metadata("/dev/console") {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("/dev/console: {e}")),
    };
    let stdin = match fs::metadata("/proc/self/fd/0") {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("stat stdin: {e}")),
    };
    Outcome::check(
        console.file_type().is_char_device() && console.rdev() == stdin.rdev(),
        || {
            format!(
                "/dev/console is {:?}, stdin is {:?}",
                procfs::major_minor(console.rdev()),
                procfs::major_minor(stdin.rdev())
            )
        },
    )
}

pub fn sysctl(env: &Env) -> Outcome {
    let Some(map) = env.spec_at("/linux/sysctl").and_then(Value::as_object) else {
        return not_set("linux.sysctl");
    };
    let mut problems = Vec::new();
    for (key, want) in map {
        let want = want.as_str().unwrap_or_default();
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        match fs::read_to_string(&path) {
            Ok(got) => {
                let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
                if norm(&got) != norm(want) {
                    problems.push(format!("{key}: want {want:?}, got {:?}", got.trim()));
                }
            }
            Err(e) => problems.push(format!("{key}: read {path}: {e}")),
        }
    }
    Outcome::from_problems(problems)
}

/// A namespace of `oci_type` is new (listed without path), joined (listed
/// with path: the inode of that path, measured by the runner) or inherited
/// from the runtime (not listed: the runner's own inode).
pub fn namespace(env: &Env, oci_type: &str) -> Outcome {
    let Some(file) = procfs::ns_file(oci_type) else {
        return Outcome::Fail(format!("unknown namespace type {oci_type}"));
    };
    let Some(mine) = procfs::ns_inode(format!("/proc/self/ns/{file}")) else {
        return Outcome::Skip(format!(
            "/proc/self/ns/{file} does not exist on this kernel"
        ));
    };
    let host = env
        .host
        .pointer(&format!("/ns_host/{oci_type}"))
        .and_then(Value::as_u64);
    let listed = env.namespaces().into_iter().find(|(t, _)| t == oci_type);
    match listed {
        Some((_, Some(path))) => {
            let Some(want) = env
                .host
                .pointer(&format!("/ns_paths/{oci_type}"))
                .and_then(Value::as_u64)
            else {
                return Outcome::Fail(format!("runner did not measure the inode of {path}"));
            };
            Outcome::check(mine == want, || {
                format!("joined {path}: want inode {want}, got {mine}")
            })
        }
        Some((_, None)) => match host {
            Some(h) => Outcome::check(mine != h, || {
                format!("want a new {oci_type} namespace, got the runtime's (inode {mine})")
            }),
            None => Outcome::Skip("runner could not read its own namespace".into()),
        },
        None => match host {
            Some(h) => Outcome::check(mine == h, || {
                format!(
                    "not listed, so the runtime's {oci_type} namespace (inode {h}) must be \
                     inherited; got inode {mine}"
                )
            }),
            None => Outcome::Skip("runner could not read its own namespace".into()),
        },
    }
}

/// `/proc/self/{uid,gid}_map` against `linux.{uid,gid}Mappings`.
pub fn mappings(env: &Env, kind: &str) -> Outcome {
    if !env.has_namespace("user") {
        return Outcome::Skip("no user namespace in config.json".into());
    }
    let field = format!("/linux/{kind}Mappings");
    let want: BTreeSet<(u64, u64, u64)> = env
        .spec_at(&field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m.get("containerID")?.as_u64()?,
                        m.get("hostID")?.as_u64()?,
                        m.get("size")?.as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let path = format!("/proc/self/{kind}_map");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(format!("read {path}: {e}")),
    };
    let got: BTreeSet<(u64, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect();
    Outcome::check(want == got, || {
        format!("want (container, host, size) {want:?}, got {got:?}")
    })
}

/// Syscalls the checker may call to test seccomp: harmless, never used by
/// the Rust runtime, and with a distinguishable success.
fn safe_syscall(name: &str) -> Option<libc::c_long> {
    Some(match name {
        "getppid" => libc::SYS_getppid,
        "getpgid" => libc::SYS_getpgid,
        "getsid" => libc::SYS_getsid,
        "getpgrp" => libc::SYS_getpgrp,
        _ => return None,
    })
}

/// SCMP_ACT_ERRNO rules: the syscall fails with `errnoRet`, or EPERM when
/// `errnoRet` is not set (config-linux.md, "Seccomp").
pub fn seccomp(env: &Env, with_errno_ret: bool) -> Outcome {
    let Some(rules) = env
        .spec_at("/linux/seccomp/syscalls")
        .and_then(Value::as_array)
    else {
        return not_set("linux.seccomp.syscalls");
    };
    let mut tested = 0;
    let mut problems = Vec::new();
    for rule in rules {
        if rule.get("action").and_then(Value::as_str) != Some("SCMP_ACT_ERRNO")
            || rule.get("args").is_some_and(|a| !a.is_null())
        {
            continue;
        }
        let errno_ret = rule.get("errnoRet").and_then(Value::as_i64);
        if errno_ret.is_some() != with_errno_ret {
            continue;
        }
        let want = errno_ret.unwrap_or(i64::from(libc::EPERM));
        for name in str_list(rule.get("names")) {
            let Some(nr) = safe_syscall(&name) else {
                continue;
            };
            tested += 1;
            // SAFETY: the syscalls in safe_syscall take one integer argument
            // (or none) and only read process ids.
            let r = unsafe { libc::syscall(nr, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if r != -1 || i64::from(errno) != want {
                problems.push(format!(
                    "{name}: returned {r} errno {errno}, want -1 errno {want}"
                ));
            }
        }
    }
    if tested == 0 {
        return Outcome::Skip(format!(
            "no SCMP_ACT_ERRNO rule {} errnoRet on a syscall the checker can call",
            if with_errno_ret { "with" } else { "without" }
        ));
    }
    Outcome::from_problems(problems)
}

/// `linux.seccomp.defaultAction` `SCMP_ACT_ERRNO`: a syscall that no rule
/// names fails with `defaultErrnoRet`, or EPERM when it is not set
/// (config-linux.md, "Seccomp": "defaultErrnoRet ... If not specified then
/// its default value is `EPERM`"). That the checker runs at all under a
/// default-deny profile is the other half: the runner's allow list holds
/// what the program needs, not the runtime's own set-up calls.
pub fn seccomp_default(env: &Env) -> Outcome {
    let Some(action) = env
        .spec_at("/linux/seccomp/defaultAction")
        .and_then(Value::as_str)
    else {
        return not_set("linux.seccomp.defaultAction");
    };
    if action != "SCMP_ACT_ERRNO" {
        return Outcome::Skip(format!(
            "defaultAction is {action}; only SCMP_ACT_ERRNO is checked"
        ));
    }
    let named: Vec<String> = env
        .spec_at("/linux/seccomp/syscalls")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .flat_map(|r| str_list(r.get("names")))
                .collect()
        })
        .unwrap_or_default();
    let Some((name, nr)) = ["getpgid", "getsid", "getpgrp", "getppid"]
        .iter()
        .filter(|n| !named.iter().any(|m| m == *n))
        .find_map(|n| safe_syscall(n).map(|nr| (*n, nr)))
    else {
        return Outcome::Skip("every syscall the checker can probe is named by a rule".into());
    };
    let want = env
        .spec_at("/linux/seccomp/defaultErrnoRet")
        .and_then(Value::as_i64)
        .unwrap_or(i64::from(libc::EPERM));
    // SAFETY: the syscalls in safe_syscall take one integer argument (or
    // none) and only read process ids.
    let r = unsafe { libc::syscall(nr, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    Outcome::check(r == -1 && i64::from(errno) == want, || {
        format!("{name} (named by no rule): returned {r} errno {errno}, want -1 errno {want}")
    })
}
