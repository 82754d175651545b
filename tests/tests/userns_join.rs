//! A container that joins another container's user namespace by path (as a
//! Kubernetes pod with user namespaces does) and creates its other
//! namespaces inside it.

use std::time::Duration;

use phantom_tests::{describe, require_root, stdout, Bundle, Runtime};
use serde_json::json;

#[test]
fn join_a_user_namespace_by_path() {
    require_root!();
    let rt = Runtime::new();
    let owner = Bundle::sh("sleep 1000").with(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let a = rt.id("userns-owner");
    rt.create(&a, &owner);
    let pid = rt.state(&a)["pid"].as_i64().unwrap();
    let userns = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();

    // (Without a pid namespace of its own the container could not mount
    // /proc: the host's pid namespace is not owned by the joined one.)
    {
        let joiner = Bundle::sh("cat /proc/self/uid_map; readlink /proc/self/ns/user; echo pid=$$")
            .with(|c| {
                let mut ns = vec![
                    json!({"type": "mount"}),
                    json!({"type": "uts"}),
                    json!({"type": "ipc"}),
                    json!({"type": "user", "path": format!("/proc/{pid}/ns/user")}),
                ];
                ns.push(json!({"type": "pid"}));
                c["linux"]["namespaces"] = json!(ns);
            });
        let out = rt.run_bundle(&joiner);
        let text = stdout(&out);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            text.contains("0     200000      65536"),
            "{}",
            describe(&out)
        );
        assert!(
            text.contains(&userns.display().to_string()),
            "{}",
            describe(&out)
        );
        assert!(text.contains("pid=1\n"), "{}", describe(&out));
    }
    rt.kill(&a, "KILL");
    rt.wait_status(&a, "stopped", Duration::from_secs(10));
}
