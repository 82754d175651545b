//! Profile → config.json: every built-in profile's Spec round-trips through serde and
//! has what the mode promises.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use phantom_policy::landlock::{FsAccess, LandlockRules};
use phantom_policy::oci::{LANDLOCK_ANNOTATION, MODE_ANNOTATION, NETWORK_ANNOTATION};
use phantom_policy::{to_oci_spec, Catalog, NetworkMode, Profile, SandboxOptions};

fn opts() -> SandboxOptions {
    let mut o = SandboxOptions::new("/run/phantom/b/rootfs", "/home/me/project");
    o.uid = 1000;
    o.gid = 1000;
    o.host_uid = 1000;
    o.host_gid = 1000;
    o
}

fn round_trip(spec: &Spec) -> Spec {
    let text = serde_json::to_string_pretty(spec).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, spec);
    back
}

fn namespaces(spec: &Spec) -> Vec<LinuxNamespaceType> {
    spec.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect()
}

fn mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a oci_spec::runtime::Mount> {
    spec.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a String> {
    spec.annotations().as_ref().unwrap().get(key)
}

#[test]
fn builtin_profiles_make_valid_configs() {
    let catalog = Catalog::builtin();
    for e in catalog.entries() {
        let p = &e.profile;
        let spec = round_trip(&to_oci_spec(p, &opts()));
        let name = &p.name;
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true), "{name}");
        assert_eq!(process.cwd(), Path::new("/workspace"), "{name}");
        assert_eq!(process.user().uid(), 1000);
        let caps = process.capabilities().as_ref().unwrap();
        assert!(
            caps.bounding().as_ref().unwrap().is_empty(),
            "{name}: no capabilities"
        );
        assert!(process
            .env()
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("PATH=")));
        let args = process.args().as_ref().unwrap();
        assert_eq!(
            args,
            p.command.as_ref().unwrap_or(&vec!["/bin/sh".to_string()])
        );

        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("/run/phantom/b/rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let ws = mount(&spec, "/workspace").expect("workspace");
        assert_eq!(ws.source().as_deref(), Some(Path::new("/home/me/project")));
        assert!(ws.options().as_ref().unwrap().contains(&"rw".to_string()));
        let tmp = mount(&spec, "/tmp").expect("/tmp");
        assert_eq!(tmp.typ().as_deref(), Some("tmpfs"));
        let size = p.resources.tmp.unwrap();
        assert!(tmp
            .options()
            .as_ref()
            .unwrap()
            .contains(&format!("size={}k", size / 1024)));
        for d in ["/proc", "/dev", "/dev/pts", "/dev/shm"] {
            assert!(mount(&spec, d).is_some(), "{name}: {d}");
        }
        let usr = mount(&spec, "/usr");
        if p.host_system {
            let usr = usr.expect("/usr");
            assert!(usr.options().as_ref().unwrap().contains(&"ro".to_string()));
            assert!(mount(&spec, "/etc/passwd").is_some());
        } else {
            assert!(usr.is_none(), "{name}: host-system is off");
            assert!(mount(&spec, "/etc/passwd").is_none());
        }

        let ns = namespaces(&spec);
        for t in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Network,
        ] {
            assert!(ns.contains(&t), "{name}: {t:?}");
        }
        let linux = spec.linux().as_ref().unwrap();
        let hardened = p.mode == phantom_policy::Mode::Hardened;
        assert_eq!(ns.contains(&LinuxNamespaceType::User), hardened, "{name}");
        if hardened {
            let m = &linux.uid_mappings().as_ref().unwrap()[0];
            assert_eq!((m.container_id(), m.host_id(), m.size()), (1000, 1000, 1));
        }
        assert!(linux.seccomp().is_some(), "{name}");
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        let r = linux.resources().as_ref().unwrap();
        assert_eq!(
            r.memory().as_ref().unwrap().limit(),
            p.resources.memory.map(|m| m as i64),
            "{name}"
        );
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(
            cpu.quota(),
            Some((p.resources.cpu.unwrap() * 100_000.0).round() as i64)
        );
        assert_eq!(
            r.pids().as_ref().unwrap().limit(),
            p.resources.pids.unwrap()
        );

        assert_eq!(annotation(&spec, MODE_ANNOTATION).unwrap(), p.mode.name());
        assert_eq!(
            annotation(&spec, NETWORK_ANNOTATION).unwrap(),
            p.network.name()
        );
        let ll = LandlockRules::from_annotation(annotation(&spec, LANDLOCK_ANNOTATION).unwrap())
            .unwrap();
        assert_eq!(ll, p.landlock, "{name}");

        // The seccomp section compiles as the runtime will compile it.
        phantom_policy::compile_oci(linux.seccomp().as_ref().unwrap()).unwrap();
    }
}

#[test]
fn java_dev_mounts_its_jdk_configuration_when_present() {
    let c = Catalog::builtin();
    let spec = to_oci_spec(&c.get("java-dev").unwrap().profile, &opts());
    for dir in ["/etc/java-17-openjdk", "/etc/java-21-openjdk"] {
        assert_eq!(
            mount(&spec, dir).is_some(),
            Path::new(dir).exists(),
            "{dir}"
        );
    }
}

#[test]
fn options_override_command_env_and_network() {
    let c = Catalog::builtin();
    let p = &c.get("python-dev").unwrap().profile;
    let mut o = opts();
    o.args = vec!["python3".into(), "app.py".into()];
    o.env = vec!["HOME=/tmp".into(), "EXTRA=1".into()];
    o.network = Some(NetworkMode::Host);
    o.terminal = true;
    let spec = round_trip(&to_oci_spec(p, &o));
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &o.args);
    let env = process.env().as_ref().unwrap();
    assert!(env.contains(&"HOME=/tmp".to_string()), "{env:?}");
    assert!(!env.contains(&"HOME=/workspace".to_string()), "{env:?}");
    assert!(env.contains(&"EXTRA=1".to_string()));
    assert!(env.contains(&"TERM=xterm".to_string()));
    assert!(env.contains(&"PYTHONUNBUFFERED=1".to_string()));
    assert_eq!(process.terminal(), Some(true));
    assert!(!namespaces(&spec).contains(&LinuxNamespaceType::Network));
    assert_eq!(annotation(&spec, NETWORK_ANNOTATION).unwrap(), "host");
}

#[test]
fn direct_mode_has_no_namespaces_and_maps_the_workspace() {
    let p = Profile::parse(
        "profile: direct-test
mode: direct
network: { mode: host }
cwd: /workspace/src
security:
  seccomp: { default: allow, deny: [ptrace] }
  landlock:
    - { path: /workspace, access: read-write }
    - { path: /workspace/cache, access: read-only }
    - { path: /usr, access: read-execute }
resources: { memory: 256MiB }
",
        "direct.yaml",
    )
    .unwrap();
    let spec = round_trip(&to_oci_spec(&p, &opts()));
    assert!(namespaces(&spec).is_empty());
    assert!(spec.mounts().as_ref().unwrap().is_empty());
    assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("/"));
    assert!(spec.hostname().is_none());
    assert_eq!(
        spec.process().as_ref().unwrap().cwd(),
        Path::new("/home/me/project/src")
    );
    assert_eq!(annotation(&spec, MODE_ANNOTATION).unwrap(), "direct");
    let ll =
        LandlockRules::from_annotation(annotation(&spec, LANDLOCK_ANNOTATION).unwrap()).unwrap();
    let paths: Vec<_> = ll
        .paths
        .iter()
        .map(|r| (r.path.clone(), r.access))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/home/me/project".into(), FsAccess::ReadWrite),
            ("/home/me/project/cache".into(), FsAccess::ReadOnly),
            ("/usr".into(), FsAccess::ReadExecute),
        ]
    );
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().is_none());
    let r = linux.resources().as_ref().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(256 << 20));
    assert!(r.devices().is_none(), "direct mode leaves devices alone");
}

#[test]
fn profile_mounts_and_rlimits() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "profile: m
mounts:
  - {{ source: {}, target: /data }}
  - {{ source: /does/not/exist, target: /opt, optional: true }}
  - {{ target: /cache, size: 8MiB }}
rlimits: {{ nofile: 100, core: 0 }}
security: {{ capabilities: [NET_BIND_SERVICE] }}
",
        d.path().display()
    );
    let p = Profile::parse(&text, "m.yaml").unwrap();
    let spec = round_trip(&to_oci_spec(&p, &opts()));
    let data = mount(&spec, "/data").unwrap();
    assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
    assert!(mount(&spec, "/opt").is_none(), "optional and missing");
    let cache = mount(&spec, "/cache").unwrap();
    assert!(cache
        .options()
        .as_ref()
        .unwrap()
        .contains(&"size=8192k".to_string()));
    let process = spec.process().as_ref().unwrap();
    let rl = process.rlimits().as_ref().unwrap();
    assert_eq!(rl.len(), 2);
    assert_eq!(rl[0].hard(), 100);
    let caps = process.capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
    // No seccomp section: no linux.seccomp.
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
}
