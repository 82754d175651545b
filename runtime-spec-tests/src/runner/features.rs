//! The features document (features.md): valid, and every feature it
//! claims is accepted by `create`.

use std::fs;

use serde_json::{json, Value};

use super::exec::describe;
use super::{Bundle, Ctx, Group, Rec};
use crate::outcome::Outcome;

const CHECKS: &[&str] = &[
    "features.document",
    "features.ociVersionMin",
    "features.ociVersionMax",
    "features.hooks",
    "features.namespaces",
    "features.mountOptions",
    "features.capabilities",
];

pub fn group() -> Group {
    Group {
        name: "features",
        checks: CHECKS.iter().map(|s| (*s).to_owned()).collect(),
        run: Box::new(run),
    }
}

/// `1.2.0-rc.1` -> (1, 2, 0, has pre-release).
fn semver(v: &str) -> Option<(u64, u64, u64, bool)> {
    let (core, pre) = match v.split_once('-') {
        Some((c, _)) => (c, true),
        None => (v, false),
    };
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let r = (it.next()??, it.next()??, it.next()??, pre);
    it.next().is_none().then_some(r)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn run(ctx: &mut Ctx, rec: &mut Rec) {
    let out = ctx.rt(&["features"]);
    let doc: Value = if out.status.success() {
        match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                for c in CHECKS {
                    rec.set(
                        *c,
                        Outcome::Fail(format!("features output is not JSON: {e}")),
                    );
                }
                return;
            }
        }
    } else {
        for c in CHECKS {
            rec.set(
                *c,
                Outcome::Fail(format!("`features` failed: {}", describe(&out))),
            );
        }
        return;
    };

    let min = doc["ociVersionMin"].as_str().unwrap_or("");
    let max = doc["ociVersionMax"].as_str().unwrap_or("");
    let mut problems = Vec::new();
    match (semver(min), semver(max)) {
        (Some(a), Some(b)) if (a.0, a.1, a.2) <= (b.0, b.1, b.2) => {}
        (Some(_), Some(_)) => problems.push(format!("ociVersionMin {min} > ociVersionMax {max}")),
        _ => problems.push(format!(
            "ociVersionMin {min:?} / ociVersionMax {max:?} are not SemVer"
        )),
    }
    for key in ["hooks", "mountOptions"] {
        if !(doc[key].is_null() || doc[key].is_array()) {
            problems.push(format!("{key} is not an array"));
        }
    }
    if !(doc["linux"].is_null() || doc["linux"].is_object()) {
        problems.push("linux is not an object".into());
    }
    rec.set("features.document", Outcome::from_problems(problems));

    for (check, version) in [
        ("features.ociVersionMin", min),
        ("features.ociVersionMax", max),
    ] {
        let o = if semver(version).is_none() {
            Outcome::Fail(format!("no usable version ({version:?})"))
        } else {
            accepted(ctx, "version", |c| c["ociVersion"] = json!(version))
                .map_or_else(Outcome::Fail, |()| Outcome::Pass)
        };
        rec.set(check, o);
    }

    // Hooks: each listed hook, as /bin/true (resolvable on the host and in
    // the busybox rootfs alike).
    let hooks = strings(&doc["hooks"]);
    rec.set(
        "features.hooks",
        check_each(ctx, "hooks", &hooks, |c, items| {
            for h in items {
                c["hooks"][h.as_str()] = json!([{"path": "/bin/true", "args": ["true"]}]);
            }
        }),
    );

    // Namespaces: added to the default set (user gets id mappings).
    let namespaces = strings(&doc["linux"]["namespaces"]);
    rec.set(
        "features.namespaces",
        check_each(ctx, "namespaces", &namespaces, |c, items| {
            let ns = c["linux"]["namespaces"].as_array_mut();
            if let Some(ns) = ns {
                for t in items {
                    if !ns.iter().any(|n| n["type"] == json!(t)) {
                        ns.push(json!({"type": t}));
                    }
                }
            }
            if items.iter().any(|t| t == "user") {
                c["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                c["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            }
        }),
    );

    // Mount options: one bind mount of a host directory per option, except
    // tmpcopyup (tmpfs only). idmap needs a user namespace and remount an
    // existing mount: both are left out.
    let options: Vec<String> = strings(&doc["mountOptions"])
        .into_iter()
        .filter(|o| !matches!(o.as_str(), "idmap" | "ridmap" | "remount"))
        .collect();
    let src = ctx.work.join("mount-option-src");
    let _ = fs::create_dir_all(&src);
    rec.set(
        "features.mountOptions",
        check_each(ctx, "mountopts", &options, |c, items| {
            if let Some(m) = c["mounts"].as_array_mut() {
                for (i, o) in items.iter().enumerate() {
                    let dest = format!("/rst-mo/{i}-{o}");
                    if o == "tmpcopyup" {
                        m.push(
                            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                                      "options": [o]}),
                        );
                    } else {
                        m.push(json!({"destination": dest, "type": "bind", "source": src,
                                      "options": ["rbind", o]}));
                    }
                }
            }
        }),
    );

    // Capabilities: each listed one in the bounding set, where the host's
    // own bounding set has it (a runtime cannot add what it lacks).
    let caps: Vec<String> = strings(&doc["linux"]["capabilities"])
        .into_iter()
        .filter(|c| ctx.host.has_cap(c))
        .collect();
    rec.set(
        "features.capabilities",
        check_each(ctx, "caps", &caps, |c, items| {
            c["process"]["capabilities"]["bounding"] = json!(items);
        }),
    );
}

/// Runs `true` in a container whose config `edit` changed.
fn accepted(ctx: &mut Ctx, what: &str, edit: impl FnOnce(&mut Value)) -> Result<(), String> {
    let mut b = Bundle::new(ctx, what)?;
    b.config["process"]["args"] = json!(["true"]);
    edit(&mut b.config);
    ctx.run_to_end(&b, what).map(drop)
}

/// All of `items` at once; when that fails, halves until each rejected
/// item is found.
fn check_each(
    ctx: &mut Ctx,
    what: &str,
    items: &[String],
    edit: impl Fn(&mut Value, &[String]) + Copy,
) -> Outcome {
    if items.is_empty() {
        return Outcome::Skip(format!("the features document lists no {what}"));
    }
    let mut rejected = Vec::new();
    find_rejected(ctx, what, items, edit, &mut rejected);
    if rejected.is_empty() {
        Outcome::Pass
    } else {
        let names: Vec<&str> = rejected.iter().map(|(i, _)| i.as_str()).collect();
        Outcome::Fail(format!(
            "listed but rejected: {}; first error: {}",
            names.join(", "),
            rejected[0].1
        ))
    }
}

fn find_rejected(
    ctx: &mut Ctx,
    what: &str,
    items: &[String],
    edit: impl Fn(&mut Value, &[String]) + Copy,
    rejected: &mut Vec<(String, String)>,
) {
    match accepted(ctx, what, |c| edit(c, items)) {
        Ok(()) => {}
        Err(e) if items.len() == 1 => rejected.push((items[0].clone(), e)),
        Err(_) => {
            let (a, b) = items.split_at(items.len() / 2);
            find_rejected(ctx, what, a, edit, rejected);
            find_rejected(ctx, what, b, edit, rejected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::semver;

    #[test]
    fn semver_parses() {
        assert_eq!(semver("1.0.2-dev"), Some((1, 0, 2, true)));
        assert_eq!(semver("1.2.0"), Some((1, 2, 0, false)));
        assert_eq!(semver("1.2"), None);
    }
}
