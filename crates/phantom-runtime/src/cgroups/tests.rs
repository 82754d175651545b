//! Unit tests against fixture directories (no root): which file gets which
//! value, in which order, for a given `linux.resources`.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use tempfile::TempDir;

use super::apply::{blkio_weight_to_io, shares_to_weight, swap_to_v2};
use super::fsio::take_writes;
use super::*;

const MAX: &str = "9223372036854771712";
const OWN: &str = "4:memory:/process_api/x\n3:cpu:/\n2:cpuacct:/\n0::/u/v\n";

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn touch(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (f, v) in files {
        fs::write(dir.join(f), v).unwrap();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

/// Writes since the last call, as ("dir-relative/file", value).
fn writes(root: &Path) -> Vec<(String, String)> {
    take_writes()
        .into_iter()
        .map(|(p, v)| (p.strip_prefix(root).unwrap().display().to_string(), v))
        .collect()
}

fn w(p: &str, v: &str) -> (String, String) {
    (p.to_string(), v.to_string())
}

/// A v1 host like this project's CI machine: no blkio weight files, no
/// net_cls, hugetlb with 2MB (+rsvd) and 1GB pages.
struct V1 {
    _tmp: TempDir,
    root: PathBuf,
    cg: Cgroup,
}

const V1_CTRLS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "name=systemd",
];

fn v1() -> V1 {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().to_path_buf();
    let layout = Layout::v1_at(&root, V1_CTRLS, None);
    let cg = Cgroup::resolve_with(&layout, OWN, Some("/ph/c1"), "c1").unwrap();
    let d = |c: &str| cg.v1[c].clone();
    touch(
        &d("memory"),
        &[
            ("memory.limit_in_bytes", MAX),
            ("memory.memsw.limit_in_bytes", MAX),
            ("memory.soft_limit_in_bytes", MAX),
            ("memory.kmem.limit_in_bytes", MAX),
            ("memory.kmem.tcp.limit_in_bytes", MAX),
            ("memory.swappiness", "60"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            ),
            ("memory.use_hierarchy", "1"),
            ("memory.usage_in_bytes", "4096"),
            ("memory.max_usage_in_bytes", "8192"),
            ("memory.failcnt", "2"),
            ("memory.memsw.usage_in_bytes", "4096"),
            ("memory.memsw.max_usage_in_bytes", "8192"),
            ("memory.memsw.failcnt", "0"),
            ("memory.stat", "cache 12288\nrss 4096\n"),
        ],
    );
    touch(
        &d("cpu"),
        &[
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.cfs_burst_us", "0"),
            ("cpu.idle", "0"),
            ("cpu.rt_period_us", "1000000"),
            ("cpu.rt_runtime_us", "0"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
            ),
        ],
    );
    touch(
        &d("cpuacct"),
        &[
            ("cpuacct.usage", "3000"),
            ("cpuacct.usage_percpu", "1000 2000 \n"),
            (
                "cpuacct.usage_all",
                "cpu user system\n0 600 400\n1 1200 800\n",
            ),
            ("cpuacct.stat", "user 5\nsystem 2\n"),
        ],
    );
    touch(
        &d("cpuset"),
        &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")],
    );
    touch(
        &d("devices"),
        &[("devices.allow", ""), ("devices.deny", "")],
    );
    touch(
        &d("freezer"),
        &[("freezer.state", "THAWED"), ("cgroup.procs", "10\n11\n")],
    );
    touch(
        &d("blkio"),
        &[
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.read_iops_device", ""),
            ("blkio.throttle.write_iops_device", ""),
            ("blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "253:0 Read 4096\n253:0 Write 0\nTotal 4096\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "253:0 Read 1\n253:0 Write 0\nTotal 1\n",
            ),
        ],
    );
    touch(
        &d("pids"),
        &[
            ("pids.max", "max"),
            ("pids.current", "2"),
            ("cgroup.procs", "10\n11\n"),
        ],
    );
    touch(
        &d("hugetlb"),
        &[
            ("hugetlb.2MB.limit_in_bytes", MAX),
            ("hugetlb.2MB.rsvd.limit_in_bytes", MAX),
            ("hugetlb.2MB.usage_in_bytes", "0"),
            ("hugetlb.2MB.failcnt", "1"),
            ("hugetlb.1GB.limit_in_bytes", MAX),
        ],
    );
    touch(&d("pids").join("sub"), &[("cgroup.procs", "12\n")]);
    take_writes();
    V1 {
        _tmp: tmp,
        root,
        cg,
    }
}

#[test]
fn v1_memory_values_and_order() {
    let f = v1();
    f.cg.apply(&res(
        r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":33554432,"kernelTCP":1048576,
            "swappiness":10,"disableOOMKiller":true,"useHierarchy":true}}"#,
    ))
    .unwrap();
    let m = "memory/ph/c1";
    assert_eq!(
        writes(&f.root),
        [
            // Lowering from unlimited: limit first, then memory+swap.
            w(&format!("{m}/memory.limit_in_bytes"), "67108864"),
            w(&format!("{m}/memory.memsw.limit_in_bytes"), "134217728"),
            w(&format!("{m}/memory.kmem.tcp.limit_in_bytes"), "1048576"),
            w(&format!("{m}/memory.soft_limit_in_bytes"), "33554432"),
            w(&format!("{m}/memory.oom_control"), "1"),
            w(&format!("{m}/memory.swappiness"), "10"),
            w(&format!("{m}/memory.use_hierarchy"), "1"),
        ]
    );
    // Raising above the current limit: memory+swap first.
    fs::write(f.cg.v1["memory"].join("memory.limit_in_bytes"), "67108864").unwrap();
    f.cg.apply(&res(r#"{"memory":{"limit":268435456,"swap":536870912}}"#))
        .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w(&format!("{m}/memory.memsw.limit_in_bytes"), "536870912"),
            w(&format!("{m}/memory.limit_in_bytes"), "268435456"),
        ]
    );
    // -1 with swap unset: both unlimited, swap first.
    f.cg.apply(&res(r#"{"memory":{"limit":-1}}"#)).unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w(&format!("{m}/memory.memsw.limit_in_bytes"), "-1"),
            w(&format!("{m}/memory.limit_in_bytes"), "-1"),
        ]
    );
    let e =
        f.cg.apply(&res(r#"{"memory":{"swappiness":101}}"#))
            .unwrap_err()
            .to_string();
    assert!(
        e.starts_with("linux.resources.memory.swappiness: 101 is out of range"),
        "{e}"
    );
    let e =
        f.cg.apply(&res(r#"{"memory":{"limit":-5}}"#))
            .unwrap_err()
            .to_string();
    assert!(e.starts_with("linux.resources.memory.limit:"), "{e}");
}

#[test]
fn v1_swap_without_memsw_file() {
    let f = v1();
    fs::remove_file(f.cg.v1["memory"].join("memory.memsw.limit_in_bytes")).unwrap();
    let e =
        f.cg.apply(&res(r#"{"memory":{"limit":1048576,"swap":2097152}}"#))
            .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("linux.resources.memory.swap: not supported here: swap accounting is off"),
        "{s}"
    );
    assert!(s.contains("memory.memsw.limit_in_bytes"), "{s}");
    assert!(
        writes(&f.root).is_empty(),
        "nothing written before the check"
    );
    // Unlimited needs no file.
    f.cg.apply(&res(r#"{"memory":{"limit":-1,"swap":-1}}"#))
        .unwrap();
    assert_eq!(
        writes(&f.root),
        [w("memory/ph/c1/memory.limit_in_bytes", "-1")]
    );
}

#[test]
fn v1_cpu_and_cpuset() {
    let f = v1();
    f.cg.apply(&res(
        r#"{"cpu":{"shares":512,"quota":50000,"period":200000,"burst":1000,"idle":0,
            "realtimePeriod":1000000,"realtimeRuntime":950000,"cpus":"0","mems":"0"}}"#,
    ))
    .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w("cpuset/ph/c1/cpuset.cpus", "0"),
            w("cpuset/ph/c1/cpuset.mems", "0"),
            w("cpu/ph/c1/cpu.shares", "512"),
            w("cpu/ph/c1/cpu.cfs_period_us", "200000"),
            w("cpu/ph/c1/cpu.cfs_burst_us", "1000"),
            w("cpu/ph/c1/cpu.cfs_quota_us", "50000"),
            w("cpu/ph/c1/cpu.idle", "0"),
            w("cpu/ph/c1/cpu.rt_period_us", "1000000"),
            w("cpu/ph/c1/cpu.rt_runtime_us", "950000"),
        ]
    );
    // Absent and zero values are left alone.
    f.cg.apply(&res(
        r#"{"cpu":{"shares":0,"cpus":""},"memory":{},"pids":{}}"#,
    ))
    .unwrap();
    f.cg.apply(&res("{}")).unwrap();
    assert!(writes(&f.root).is_empty());
    assert_eq!(read(&f.cg.v1["cpu"].join("cpu.cfs_period_us")), "200000");
}

#[test]
fn v1_pids_hugetlb_blkio_devices() {
    let f = v1();
    f.cg.apply(&res(
        r#"{"pids":{"limit":32},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304},{"pageSize":"1GB","limit":-1}],
            "blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                       "throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":100}]},
            "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#,
    ))
    .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w("devices/ph/c1/devices.deny", "a *:* rwm"),
            w("devices/ph/c1/devices.allow", "c 1:3 rw"),
            w("pids/ph/c1/pids.max", "32"),
            w("blkio/ph/c1/blkio.throttle.read_bps_device", "8:0 1048576"),
            w("blkio/ph/c1/blkio.throttle.write_iops_device", "8:16 100"),
            w("hugetlb/ph/c1/hugetlb.2MB.limit_in_bytes", "4194304"),
            w("hugetlb/ph/c1/hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
            w("hugetlb/ph/c1/hugetlb.1GB.limit_in_bytes", "-1"),
        ]
    );
    // A first rule that is not "deny all" still starts from deny-all.
    f.cg.apply(&res(
        r#"{"pids":{"limit":-1},"devices":[{"allow":true,"type":"b","major":8,"access":"r"}]}"#,
    ))
    .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w("devices/ph/c1/devices.deny", "a *:* rwm"),
            w("devices/ph/c1/devices.allow", "b 8:* r"),
            w("pids/ph/c1/pids.max", "max"),
        ]
    );
}

#[test]
fn v1_what_this_host_cannot_do() {
    let f = v1();
    let err = |json: &str| f.cg.apply(&res(json)).unwrap_err().to_string();
    let e = err(r#"{"blockIO":{"weight":500}}"#);
    assert!(
        e.starts_with("linux.resources.blockIO.weight: not supported here: no blkio.weight"),
        "{e}"
    );
    let e = err(r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":100}]}}"#);
    assert!(
        e.starts_with("linux.resources.blockIO.weightDevice[0]:"),
        "{e}"
    );
    let e = err(r#"{"hugepageLimits":[{"pageSize":"4MB","limit":1}]}"#);
    assert!(
        e.contains("hugepageLimits[0]") && e.contains("hugetlb.4MB.limit_in_bytes"),
        "{e}"
    );
    let e = err(r#"{"network":{"classID":1048577}}"#);
    assert!(e.starts_with("linux.resources.network.classID: not supported here: the net_cls controller is not mounted"), "{e}");
    let e = err(r#"{"rdma":{"mlx4_0":{"hcaHandles":1}}}"#);
    assert!(
        e.starts_with(
            "linux.resources.rdma: not supported here: the rdma controller is not mounted"
        ),
        "{e}"
    );
    let e = err(r#"{"unified":{"memory.high":"1000000"}}"#);
    assert!(e.starts_with(r#"linux.resources.unified["memory.high"]: the memory controller is a cgroup v1 hierarchy"#), "{e}");
    let e = err(r#"{"unified":{"io.max":"8:0 rbps=1"}}"#);
    assert!(e.contains("no cgroup v2 hierarchy"), "{e}");
    let e = err(r#"{"devices":[{"allow":true,"type":"c","access":""}]}"#);
    assert!(e.starts_with("linux.resources.devices[0].access:"), "{e}");
    assert!(writes(&f.root).is_empty());
}

#[test]
fn v1_freeze_pids_oom_stats() {
    let f = v1();
    f.cg.freeze().unwrap();
    assert!(f.cg.is_frozen());
    f.cg.thaw().unwrap();
    assert!(!f.cg.is_frozen());
    assert_eq!(
        writes(&f.root),
        [
            w("freezer/ph/c1/freezer.state", "FROZEN"),
            w("freezer/ph/c1/freezer.state", "THAWED")
        ]
    );
    assert_eq!(f.cg.pids().unwrap(), [10, 11, 12]);
    assert_eq!(f.cg.oom_kill_count(), 3);
    let s = f.cg.stats().unwrap();
    assert_eq!(s["cpu"]["usage"]["total"], 3000);
    assert_eq!(s["cpu"]["usage"]["percpu"], serde_json::json!([1000, 2000]));
    assert_eq!(
        s["cpu"]["usage"]["percpu_kernel"],
        serde_json::json!([400, 800])
    );
    assert_eq!(s["cpu"]["usage"]["user"], 50_000_000, "5 ticks of 10 ms");
    assert_eq!(
        s["cpu"]["throttling"],
        serde_json::json!({"periods":10,"throttledPeriods":4,"throttledTime":5000})
    );
    assert_eq!(s["memory"]["cache"], 12288);
    assert_eq!(
        s["memory"]["usage"],
        serde_json::json!({"limit":9223372036854771712u64,"usage":4096,"max":8192,"failcnt":2})
    );
    assert_eq!(s["memory"]["raw"]["rss"], 4096);
    assert_eq!(s["memory"]["kernel"]["failcnt"], 0);
    assert_eq!(
        s["pids"],
        serde_json::json!({"current": 2}),
        "limit max is left out, as runc"
    );
    assert_eq!(
        s["blkio"]["ioServiceBytesRecursive"],
        serde_json::json!([{"major":253,"op":"Read","value":4096},{"major":253,"op":"Write"}])
    );
    assert_eq!(
        s["hugetlb"],
        serde_json::json!({"1GB":{"failcnt":0},"2MB":{"failcnt":1}})
    );
    assert_eq!(s["cpuset"]["cpus"], serde_json::json!([0, 1]));
}

/// A pure v2 host with every controller enabled for the cgroup.
struct V2 {
    _tmp: TempDir,
    root: PathBuf,
    cg: Cgroup,
}

const V2_CTRLS: &str = "cpuset cpu io memory hugetlb pids rdma misc";

fn v2() -> V2 {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().to_path_buf();
    let cg = Cgroup::resolve_with(&Layout::v2_at(&root), OWN, Some("/ph/c1"), "c1").unwrap();
    let d = cg.unified.clone().unwrap();
    touch(
        &d,
        &[
            ("cgroup.controllers", V2_CTRLS),
            ("cgroup.procs", "20\n"),
            ("cgroup.freeze", "0"),
            ("cgroup.events", "populated 1\nfrozen 1\n"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("memory.low", "0"),
            ("memory.high", "max"),
            ("memory.current", "8192"),
            ("memory.peak", "16384"),
            ("memory.swap.current", "100"),
            ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
            ("memory.stat", "anon 4096\nfile 8192\n"),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("cpu.max.burst", "0"),
            ("cpu.idle", "0"),
            ("cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\nnr_periods 3\nnr_throttled 1\nthrottled_usec 9\n"),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
            ("cpuset.cpus.effective", "0-1"),
            ("pids.max", "max"),
            ("pids.current", "1"),
            ("io.max", ""),
            ("io.weight", "default 100"),
            ("io.stat", "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n"),
            ("hugetlb.2MB.max", "max"),
            ("hugetlb.2MB.rsvd.max", "max"),
            ("hugetlb.2MB.current", "0"),
            ("hugetlb.2MB.events", "max 0\n"),
            ("rdma.max", ""),
        ],
    );
    take_writes();
    V2 {
        _tmp: tmp,
        root,
        cg,
    }
}

#[test]
fn v2_memory_swap_semantics() {
    let f = v2();
    let m = "ph/c1";
    f.cg.apply(&res(
        r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1048576}}"#,
    ))
    .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            // memory.swap.max is swap alone: memory+swap - memory.
            w(&format!("{m}/memory.swap.max"), "67108864"),
            w(&format!("{m}/memory.max"), "67108864"),
            w(&format!("{m}/memory.low"), "1048576"),
        ]
    );
    f.cg.apply(&res(r#"{"memory":{"limit":-1}}"#)).unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w(&format!("{m}/memory.swap.max"), "max"),
            w(&format!("{m}/memory.max"), "max")
        ]
    );
    f.cg.apply(&res(r#"{"memory":{"limit":67108864,"swap":67108864}}"#))
        .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w(&format!("{m}/memory.swap.max"), "0"),
            w(&format!("{m}/memory.max"), "67108864")
        ]
    );
    // Settings v2 does not have: warnings, no writes.
    f.cg.apply(&res(
        r#"{"memory":{"kernel":1,"kernelTCP":1,"swappiness":5,"disableOOMKiller":true}}"#,
    ))
    .unwrap();
    assert!(writes(&f.root).is_empty());
    let e =
        f.cg.apply(&res(r#"{"memory":{"swap":1000}}"#))
            .unwrap_err()
            .to_string();
    assert!(
        e.starts_with("linux.resources.memory.swap: a swap limit needs a memory limit"),
        "{e}"
    );
    let e =
        f.cg.apply(&res(r#"{"memory":{"limit":2000,"swap":1000}}"#))
            .unwrap_err()
            .to_string();
    assert!(e.contains("must be >= the memory limit"), "{e}");
    let e =
        f.cg.apply(&res(
            r#"{"memory":{"limit":4096,"checkBeforeUpdate":true}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("current usage 8192"), "{e}");
    // No swap accounting: unlimited swap needs no file, a real one does.
    fs::remove_file(f.cg.unified.as_ref().unwrap().join("memory.swap.max")).unwrap();
    f.cg.apply(&res(r#"{"memory":{"limit":-1}}"#)).unwrap();
    assert_eq!(writes(&f.root), [w(&format!("{m}/memory.max"), "max")]);
    assert!(f
        .cg
        .apply(&res(r#"{"memory":{"limit":100,"swap":200}}"#))
        .is_err());
}

#[test]
fn v2_cpu_weight_and_max() {
    let f = v2();
    f.cg.apply(&res(
        r#"{"cpu":{"shares":1024,"quota":50000,"burst":10,"idle":1,"cpus":"1","mems":"0"}}"#,
    ))
    .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w("ph/c1/cpuset.cpus", "1"),
            w("ph/c1/cpuset.mems", "0"),
            w("ph/c1/cpu.idle", "1"),
            w("ph/c1/cpu.weight", "39"),
            w("ph/c1/cpu.max.burst", "10"),
            w("ph/c1/cpu.max", "50000 100000"),
        ]
    );
    // Only the period: the quota in cpu.max stays.
    fs::write(
        f.cg.unified.as_ref().unwrap().join("cpu.max"),
        "50000 100000",
    )
    .unwrap();
    f.cg.apply(&res(r#"{"cpu":{"period":200000}}"#)).unwrap();
    f.cg.apply(&res(r#"{"cpu":{"quota":-1}}"#)).unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w("ph/c1/cpu.max", "50000 200000"),
            w("ph/c1/cpu.max", "max 200000")
        ]
    );
    let e =
        f.cg.apply(&res(r#"{"cpu":{"realtimeRuntime":1000}}"#))
            .unwrap_err()
            .to_string();
    assert!(
        e.starts_with(
            "linux.resources.cpu.realtimeRuntime: not supported here: cgroup v2 has no real-time"
        ),
        "{e}"
    );
}

#[test]
fn conversions_match_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1), 1, "below the kernel minimum");
    assert_eq!(shares_to_weight(1 << 30), 10_000);
    assert_eq!(blkio_weight_to_io(10), 1);
    assert_eq!(blkio_weight_to_io(500), 4950);
    assert_eq!(blkio_weight_to_io(1000), 10_000);
    assert_eq!(swap_to_v2(0, -1), Ok(-1));
    assert_eq!(swap_to_v2(0, 100), Ok(0));
    assert_eq!(swap_to_v2(-1, 100), Ok(-1));
    assert_eq!(swap_to_v2(300, 100), Ok(200));
    assert_eq!(swap_to_v2(300, -1), Ok(300));
    assert!(swap_to_v2(300, 0).is_err());
    assert!(swap_to_v2(50, 100).is_err());
}

#[test]
fn v2_pids_io_hugetlb_rdma_unified() {
    let f = v2();
    f.cg.apply(&res(r#"{"pids":{"limit":-1},
            "blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":1000}],
                       "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                       "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":10}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":2097152}],
            "rdma":{"mlx4_0":{"hcaHandles":2,"hcaObjects":3}},
            "unified":{"memory.high":"1048576","io.max":"8:16 wbps=1\n8:32 wbps=2"}}"#))
        .unwrap();
    assert_eq!(
        writes(&f.root),
        [
            w("ph/c1/pids.max", "max"),
            w("ph/c1/io.weight", "4950"),
            w("ph/c1/io.weight", "8:0 10000"),
            w("ph/c1/io.max", "8:0 rbps=1048576"),
            w("ph/c1/io.max", "8:0 wiops=10"),
            w("ph/c1/hugetlb.2MB.max", "2097152"),
            w("ph/c1/hugetlb.2MB.rsvd.max", "2097152"),
            w("ph/c1/rdma.max", "mlx4_0 hca_handle=2 hca_object=3"),
            // unified goes last, sorted, one write per line.
            w("ph/c1/io.max", "8:16 wbps=1"),
            w("ph/c1/io.max", "8:32 wbps=2"),
            w("ph/c1/memory.high", "1048576"),
        ]
    );
    // bfq: its own weight file, weights as given.
    touch(f.cg.unified.as_ref().unwrap(), &[("io.bfq.weight", "100")]);
    f.cg.apply(&res(r#"{"blockIO":{"weight":500}}"#)).unwrap();
    assert_eq!(writes(&f.root), [w("ph/c1/io.bfq.weight", "500")]);
}

#[test]
fn v2_missing_controllers_and_bad_keys() {
    let f = v2();
    let dir = f.cg.unified.clone().unwrap();
    fs::write(dir.join("cgroup.controllers"), "cpu memory").unwrap();
    // Without the controller its files are absent too.
    fs::remove_file(dir.join("pids.max")).unwrap();
    let err = |json: &str| f.cg.apply(&res(json)).unwrap_err().to_string();
    let e = err(r#"{"pids":{"limit":10}}"#);
    assert!(
        e.starts_with("linux.resources.pids.limit: not supported here: the pids controller is not enabled for this cgroup"),
        "{e}"
    );
    assert!(e.contains("cgroup.controllers"), "{e}");
    let e = err(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#);
    assert!(e.contains("hugetlb controller is not enabled"), "{e}");
    let e = err(r#"{"network":{"priorities":[{"name":"eth0","priority":1}]}}"#);
    assert!(e.contains("cgroup v2 has no net_prio controller"), "{e}");
    let e = err(r#"{"blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1}]}}"#);
    assert!(
        e.starts_with("linux.resources.blockIO: not supported here: the io controller"),
        "{e}"
    );
    let e = err(r#"{"unified":{"pids.max":"10"}}"#);
    assert!(
        e.contains(r#"unified["pids.max"]"#) && e.contains("pids controller is not available"),
        "{e}"
    );
    let e = err(r#"{"unified":{"../x":"1"}}"#);
    assert!(e.contains("CONTROLLER.PARAMETER"), "{e}");
    let e = err(r#"{"unified":{"max":"1"}}"#);
    assert!(e.contains("CONTROLLER.PARAMETER"), "{e}");
    assert!(writes(&f.root).is_empty());
}

#[test]
fn v2_freeze_stats_create() {
    let f = v2();
    f.cg.freeze().unwrap();
    assert!(f.cg.is_frozen());
    f.cg.thaw().unwrap();
    assert_eq!(
        writes(&f.root),
        [w("ph/c1/cgroup.freeze", "1"), w("ph/c1/cgroup.freeze", "0")]
    );
    assert_eq!(f.cg.oom_kill_count(), 1);
    assert_eq!(f.cg.pids().unwrap(), [20]);
    // A cgroup whose directory is gone (a systemd scope removed once it
    // emptied) has no processes: `kill --all` after the exit succeeds.
    let gone = Cgroup::resolve_with(&Layout::v2_at(&f.root), OWN, Some("/ph/gone"), "g").unwrap();
    assert_eq!(gone.pids().unwrap(), Vec::<i32>::new());
    let s = f.cg.stats().unwrap();
    assert_eq!(
        s["cpu"]["usage"],
        serde_json::json!({"total":7000,"kernel":2000,"user":5000})
    );
    assert_eq!(s["cpu"]["throttling"]["throttledTime"], 9000);
    assert_eq!(
        s["memory"]["usage"],
        serde_json::json!({"limit":u64::MAX,"usage":8192,"max":16384,"failcnt":5})
    );
    assert_eq!(
        s["memory"]["swap"],
        serde_json::json!({"limit":u64::MAX,"usage":8292,"failcnt":0})
    );
    assert_eq!(s["memory"]["cache"], 8192);
    assert_eq!(
        s["blkio"]["ioServicedRecursive"],
        serde_json::json!([{"major":8,"op":"Read","value":1},{"major":8,"op":"Write","value":2},{"major":8,"op":"Discard"}])
    );
    assert_eq!(s["hugetlb"]["2MB"], serde_json::json!({"failcnt":0}));
    assert_eq!(s["cpuset"]["cpus"], serde_json::json!([0, 1]));

    // create: controllers enabled from the mount down, directories made.
    touch(
        &f.root,
        &[
            ("cgroup.controllers", "cpu memory pids"),
            ("cgroup.subtree_control", "cpu"),
        ],
    );
    let cg = Cgroup::resolve_with(&Layout::v2_at(&f.root), OWN, Some("/a/b"), "x").unwrap();
    cg.create().unwrap();
    assert!(f.root.join("a/b").is_dir());
    assert_eq!(
        writes(&f.root),
        [w("cgroup.subtree_control", "+memory +pids")]
    );
    cg.destroy().unwrap();
    assert!(!f.root.join("a/b").exists());
    cg.destroy().unwrap();
}

#[test]
fn resolve_follows_runc() {
    let root = Path::new("/cg");
    let hybrid = Layout::v1_at(root, &["memory", "cpu"], Some(Path::new("/cg/unified")));
    // Relative: below our own cgroup in each v1 hierarchy and in the unified one.
    let cg = Cgroup::resolve_with(&hybrid, OWN, Some("foo/bar"), "id").unwrap();
    assert_eq!(
        cg.v1["memory"],
        Path::new("/cg/memory/process_api/x/foo/bar")
    );
    assert_eq!(cg.v1["cpu"], Path::new("/cg/cpu/foo/bar"));
    assert_eq!(
        cg.unified.as_deref(),
        Some(Path::new("/cg/unified/u/v/foo/bar"))
    );
    assert_eq!(cg.unified_mount.as_deref(), Some(Path::new("/cg/unified")));
    // Absolute: from each hierarchy's root.
    let cg = Cgroup::resolve_with(&hybrid, OWN, Some("/a//b/"), "id").unwrap();
    assert_eq!(cg.path, "/a/b");
    assert_eq!(cg.v1["memory"], Path::new("/cg/memory/a/b"));
    assert_eq!(cg.unified.as_deref(), Some(Path::new("/cg/unified/a/b")));
    // None or empty: the container id, relative (runc's default).
    for p in [None, Some("")] {
        let cg = Cgroup::resolve_with(&hybrid, OWN, p, "myid").unwrap();
        assert_eq!(cg.v1["memory"], Path::new("/cg/memory/process_api/x/myid"));
    }
    // Pure v2: relative to the parent of our own cgroup.
    let v2 = Layout::v2_at("/sys/fs/cgroup");
    let cg = Cgroup::resolve_with(&v2, OWN, Some("foo"), "id").unwrap();
    assert_eq!(
        cg.unified.as_deref(),
        Some(Path::new("/sys/fs/cgroup/u/foo"))
    );
    assert!(cg.is_v2());
    let cg = Cgroup::resolve_with(&v2, "0::/\n", None, "id").unwrap();
    assert_eq!(cg.unified.as_deref(), Some(Path::new("/sys/fs/cgroup/id")));
    let cg = Cgroup::resolve_with(&v2, OWN, Some("/a/b"), "id").unwrap();
    assert_eq!(cg.unified.as_deref(), Some(Path::new("/sys/fs/cgroup/a/b")));
    // "..", the root and our own cgroup are refused.
    for bad in ["/a/../b", "../x", "x/..", "/", "."] {
        let e = Cgroup::resolve_with(&v2, OWN, Some(bad), "id").unwrap_err();
        assert!(matches!(e, CgroupError::InvalidPath { .. }), "{bad}: {e}");
    }
    // state.json round trip.
    let cg = Cgroup::resolve_with(&hybrid, OWN, Some("/a"), "id").unwrap();
    let json = serde_json::to_string(&cg).unwrap();
    assert!(json.contains(r#""unifiedMount":"/cg/unified""#), "{json}");
    assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);
    let cg = Cgroup::resolve_with(&v2, OWN, Some("/a"), "id").unwrap();
    assert!(!serde_json::to_string(&cg).unwrap().contains("v1"));
}

#[test]
fn hybrid_uses_unified_for_what_v1_lacks() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let layout = Layout::v1_at(root, &["memory", "pids"], Some(&root.join("unified")));
    let cg = Cgroup::resolve_with(&layout, OWN, Some("/c"), "c").unwrap();
    touch(&cg.v1["pids"], &[("pids.max", "max")]);
    touch(
        cg.unified.as_ref().unwrap(),
        &[
            ("cgroup.controllers", "hugetlb"),
            ("hugetlb.2MB.max", "max"),
            ("cgroup.freeze", "0"),
            ("cgroup.events", "frozen 1\n"),
        ],
    );
    take_writes();
    cg.apply(&res(
        r#"{"pids":{"limit":5},"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
    ))
    .unwrap();
    // No v1 freezer: cgroup.freeze in the unified hierarchy.
    cg.freeze().unwrap();
    assert_eq!(
        writes(root),
        [
            w("pids/c/pids.max", "5"),
            w("unified/c/hugetlb.2MB.max", "2097152"),
            w("unified/c/cgroup.freeze", "1"),
        ]
    );
    let e = cg
        .apply(&res(r#"{"cpu":{"quota":1000}}"#))
        .unwrap_err()
        .to_string();
    assert!(e.contains("hybrid host: cpu cannot be set"), "{e}");
    // A unified key for a controller only the unified hierarchy has.
    fs::write(cg.unified.as_ref().unwrap().join("hugetlb.2MB.max"), "max").unwrap();
    cg.apply(&res(r#"{"unified":{"hugetlb.2MB.max":"4194304"}}"#))
        .unwrap();
    assert_eq!(writes(root), [w("unified/c/hugetlb.2MB.max", "4194304")]);
}

/// Hybrid: `create` enables no controller in the cgroup2 hierarchy (a
/// controller enabled in its root's subtree_control stays bound to v2 and
/// cannot be mounted as v1 any more, which broke crun's set-up); a setting
/// that needs one enables that one only, from the mount down.
#[test]
fn hybrid_create_enables_no_cgroup2_controller() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let unified = root.join("unified");
    let layout = Layout::v1_at(root, &["memory", "pids"], Some(&unified));
    touch(
        &unified,
        &[
            ("cgroup.controllers", "hugetlb misc"),
            ("cgroup.subtree_control", ""),
        ],
    );
    let cg = Cgroup::resolve_with(&layout, OWN, Some("/p/c"), "c").unwrap();
    take_writes();
    cg.create().unwrap();
    assert!(unified.join("p/c").is_dir() && root.join("pids/p/c").is_dir());
    assert_eq!(writes(root), []);
    touch(
        &unified.join("p"),
        &[
            ("cgroup.controllers", "hugetlb"),
            ("cgroup.subtree_control", ""),
        ],
    );
    // hugepageLimits: +hugetlb on the way down (the fixture's kernel does
    // not propagate it, so the field then fails, naming the controller).
    let e = cg
        .apply(&res(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("hugetlb"), "{e}");
    assert_eq!(
        writes(root),
        [
            w("unified/cgroup.subtree_control", "+hugetlb"),
            w("unified/p/cgroup.subtree_control", "+hugetlb"),
        ]
    );
    cg.destroy().unwrap();
}
