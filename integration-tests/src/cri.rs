//! containerd 1.6's CRI plugin, the API the kubelet talks to, with the
//! runtime under test as a runtime handler, driven over gRPC by a client
//! built from Kubernetes' own protos (`k8s-cri`, `tonic`): the calls and the
//! configs are the kubelet's, so what passes here is what a node needs.
//!
//! Everything is private to one temp dir: containerd's root, state, socket
//! and config; the CRI plugin's state (and, with
//! `netns_mounts_under_state_dir`, the pods' network namespaces); the runc
//! root of the handler (`options.Root`); the CNI config and plugins; the
//! pods' log directories. Nothing under `/etc` changes. The shim still puts
//! its sockets under `/run/containerd/s` (fixed in containerd 1.6) and
//! libcni its result cache under `/var/lib/cni`; both are removed again if
//! the suite created them.
//!
//! Networking: the CRI plugin refuses a pod whose CNI result has no address
//! on `eth0`, and containerd adds the loopback network itself (Debian's
//! `loopback` plugin). Debian 12's CNI plugins have no `dummy`, and
//! `bridge` or `ptp` would change the host's network, so the pod network is
//! a tiny plugin written here: a veth pair whose two ends both stay inside
//! the pod's netns, `eth0` with a TEST-NET address. Nothing leaves the pod,
//! and the interfaces die with the netns.
//!
//! The image (pause and workload alike) is the busybox-static rootfs of
//! `hack/make-rootfs.sh`, written as an OCI image layout here and loaded
//! with `ctr -n k8s.io images import`: no registry, no Podman.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{
    kill_leftovers, mount_points, require_programs, rootfs_tar, run, unmount_under, wait_for,
    Engine, HostLeftovers, Output, Runtime, CMD_TIMEOUT,
};

/// The containerd namespace of the CRI plugin (fixed by containerd).
pub const NAMESPACE: &str = "k8s.io";

/// The image of every pod: pause (its default command sleeps) and
/// workload containers (which bring their own command).
pub const IMAGE: &str = "localhost/phantom-cri-busybox:latest";

/// The Kubernetes namespace the pods claim to be in (labels, log paths).
pub const POD_NAMESPACE: &str = "phantom-cri";

/// Upper bound for one CRI call (the kubelet's is 2 minutes): long enough
/// for the slowest call here (StopContainer with a 10 s grace period).
pub const CRI_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound for one CRI call of the cleanup after a test: a runtime
/// that cannot kill makes StopPodSandbox hang, and the suite's teardown
/// removes what is left anyway.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The address the pod network gives every pod's `eth0` (RFC 5737
/// TEST-NET-1: never routed; nothing is sent to it).
pub const POD_IP: &str = "192.0.2.2";

/// The kubelet's default masked and read-only paths
/// (`pkg/securitycontext/util.go`), which it sends with every container.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The pod network's CNI plugin (see the module docs). It speaks CNI
/// 0.4.0: ADD prints the result, DEL and CHECK have nothing to do (the
/// interfaces live and die with the netns).
const CNI_PLUGIN: &str = r#"#!/bin/sh
# CNI plugin of phantom's CRI tests: eth0 is one end of a veth pair whose
# other end stays in the same (the pod's) netns. Nothing reaches the host.
# The network config arrives on stdin; this plugin needs nothing from it.
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
	in_pod() { nsenter --net="$CNI_NETNS" "$@"; }
	if ! err=$(in_pod ip link add "$CNI_IFNAME" type veth peer name "$CNI_IFNAME-peer" 2>&1 &&
		in_pod ip addr add @POD_IP@/24 dev "$CNI_IFNAME" 2>&1 &&
		in_pod ip link set "$CNI_IFNAME-peer" up 2>&1 &&
		in_pod ip link set "$CNI_IFNAME" up 2>&1); then
		printf '{"cniVersion":"0.4.0","code":11,"msg":"phantom-cri-net: %s"}' "$err"
		exit 1
	fi
	mac=$(in_pod cat "/sys/class/net/$CNI_IFNAME/address")
	printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%s","mac":"%s","sandbox":"%s"}],' \
		"$CNI_IFNAME" "$mac" "$CNI_NETNS"
	printf '"ips":[{"version":"4","address":"@POD_IP@/24","interface":0}]}'
	;;
DEL | CHECK) ;;
VERSION)
	printf '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}'
	;;
*)
	printf '{"cniVersion":"0.4.0","code":4,"msg":"unknown CNI_COMMAND %s"}' "$CNI_COMMAND"
	exit 1
	;;
esac
"#;

/// A private containerd with the CRI plugin and one runtime handler, named
/// after the runtime under test.
pub struct Cri {
    pub runtime: Runtime,
    dir: TempDir,
    daemon: Option<Child>,
    rt: tokio::runtime::Runtime,
    channel: Option<Channel>,
    /// The top cgroup (under every hierarchy) of all pods of this run, as
    /// the kubelet's `kubepods`: `/<top>/pod<uid>/<container id>`, or with
    /// the systemd driver `<top>.slice/<top>-pod<uid>.slice/
    /// cri-containerd-<id>.scope`.
    top_cgroup: String,
    /// `CRI_SYSTEMD_CGROUP=1`: the handler has `SystemdCgroup = true` and
    /// the pods' parents are slices, as on a kubeadm node
    /// (`cgroupDriver: systemd`).
    systemd: bool,
    seq: AtomicUsize,
    /// Pods whose cleanup failed once: the teardown does not try again
    /// through the CRI plugin.
    given_up: Mutex<Vec<String>>,
    // Dropped after `dir` is emptied by `Drop::drop`.
    _host: HostLeftovers,
}

/// The gRPC client of the CRI runtime service.
pub type Client = RuntimeServiceClient<Channel>;

impl Engine for Cri {
    const NAME: &'static str = "cri";

    fn setup(runtime: &Runtime) -> Result<Self, String> {
        require_programs(&[
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "nsenter",
            "ip",
            "tar",
        ])?;
        let loopback = Path::new("/usr/lib/cni/loopback");
        if !loopback.is_file() {
            return Err(format!(
                "{} missing: run integration-tests/setup.sh (containernetworking-plugins)",
                loopback.display()
            ));
        }
        let systemd = std::env::var("CRI_SYSTEMD_CGROUP").is_ok_and(|v| v == "1");
        if systemd && !Path::new("/run/systemd/system").is_dir() {
            return Err("CRI_SYSTEMD_CGROUP=1 needs systemd as PID 1 (make vm-test)".into());
        }
        // A slice name's dashes are its path (`a-b.slice` is
        // `a.slice/a-b.slice`): the top slice has none.
        let top_cgroup = if systemd {
            format!("phantom_cri_{}", std::process::id())
        } else {
            format!("phantom-cri-{}", std::process::id())
        };
        let top_dir = if systemd {
            format!("{top_cgroup}.slice")
        } else {
            top_cgroup.clone()
        };
        let host = HostLeftovers::record(
            [
                "/run/containerd/s",
                "/run/containerd/fifo",
                "/run/containerd",
                "/var/lib/cni/results",
                "/var/lib/cni",
            ]
            .iter()
            .map(PathBuf::from)
            .chain(HostLeftovers::cgroups(&[&top_dir])),
        )
        .scratch("/var/lib/cni/results", "phantom-cri-")
        .scratch("/var/lib/cni/results", "cni-loopback-");
        // One worker drives tonic's connection; tests block on it.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let mut cri = Self {
            runtime: runtime.clone(),
            dir: crate::suite_dir("cri")?,
            daemon: None,
            rt,
            channel: None,
            top_cgroup,
            systemd,
            seq: AtomicUsize::new(0),
            given_up: Mutex::default(),
            _host: host,
        };
        cri.write_cni(loopback)?;
        cri.start()?;
        cri.import_image()?;
        Ok(cri)
    }
}

impl Cri {
    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The daemon's gRPC socket (containerd's API and the CRI services).
    pub fn socket(&self) -> PathBuf {
        self.path("containerd.sock")
    }

    /// The handler's `options.Root`; the shim adds the namespace below it.
    pub fn runc_root(&self) -> PathBuf {
        self.path("runc-root")
    }

    /// The runtime's state root for the CRI containers (`--root`).
    pub fn state_root(&self) -> PathBuf {
        self.runc_root().join(NAMESPACE)
    }

    /// The runtime handler's name (what a RuntimeClass names).
    pub fn handler(&self) -> &str {
        &self.runtime.name
    }

    /// The top cgroup of this run's pods (relative to each hierarchy).
    pub fn top_cgroup(&self) -> String {
        if self.systemd {
            format!("{}.slice", self.top_cgroup)
        } else {
            self.top_cgroup.clone()
        }
    }

    /// Whether the handler uses the systemd cgroup driver.
    pub fn systemd(&self) -> bool {
        self.systemd
    }

    fn write_cni(&self, loopback: &Path) -> Result<(), String> {
        let bin = self.path("cni/bin");
        let conf = self.path("cni/conf");
        for d in [&bin, &conf] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        std::os::unix::fs::symlink(loopback, bin.join("loopback"))
            .map_err(|e| format!("cni loopback link: {e}"))?;
        let plugin = bin.join("phantom-cri-net");
        fs::write(&plugin, CNI_PLUGIN.replace("@POD_IP@", POD_IP))
            .map_err(|e| format!("{}: {e}", plugin.display()))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", plugin.display()))?;
        let list = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "phantom-cri",
            "plugins": [{"type": "phantom-cri-net"}],
        });
        fs::write(conf.join("10-phantom-cri.conflist"), list.to_string())
            .map_err(|e| format!("cni conf: {e}"))
    }

    fn snapshotter() -> String {
        std::env::var("SNAPSHOTTER").unwrap_or_else(|_| "overlayfs".into())
    }

    fn start(&mut self) -> Result<(), String> {
        for sub in ["root", "state", "opt", "runc-root", "pods"] {
            fs::create_dir_all(self.path(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        let dir = self.dir.path().display();
        let handler = self.handler();
        let binary = self.runtime.binary.display();
        let snapshotter = Self::snapshotter();
        let systemd = self.systemd;
        let mut config = crate::containerd::base_config(self.dir.path(), "CRI tests", true);
        config += &format!(
            r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # The pause gets oom_score_adj -998; lowering one's score needs
  # CAP_SYS_RESOURCE, which this machine's bounding set lacks (no runtime
  # could write it): keep scores at or above containerd's own, as on
  # rootless nodes.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "{handler}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}.options]
        BinaryName = "{binary}"
        Root = "{dir}/runc-root"
        SystemdCgroup = {systemd}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{dir}/cni/bin"
    conf_dir = "{dir}/cni/conf"
    max_conf_num = 1
"#
        );
        fs::write(self.path("config.toml"), config).map_err(|e| format!("config.toml: {e}"))?;
        let child = crate::containerd::spawn_daemon(self.dir.path())?;
        self.daemon = Some(child);
        let up = wait_for(Duration::from_secs(30), || {
            self.ctr(&["version"])
                .map(|o| o.code() == Some(0))
                .unwrap_or(false)
        });
        if !up {
            return Err(format!("containerd did not come up:\n{}", self.log_tail()));
        }
        let socket = self.socket();
        let channel = self.rt.block_on(async move {
            Endpoint::try_from("http://[::]:50051")
                .map_err(|e| e.to_string())?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(socket).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| format!("connect to the CRI socket: {e}"))
        })?;
        self.channel = Some(channel);
        // The kubelet waits for RuntimeReady and NetworkReady; so do we
        // (the CNI config is loaded asynchronously).
        let mut last = String::new();
        let ready = wait_for(Duration::from_secs(20), || {
            match self.call(
                "Status",
                api::StatusRequest::default(),
                |mut c, r| async move { c.status(r).await },
            ) {
                Ok(s) => {
                    let conds = s.status.map(|s| s.conditions).unwrap_or_default();
                    last = format!("{conds:?}");
                    conds.len() >= 2 && conds.iter().all(|c| c.status)
                }
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        if !ready {
            return Err(format!(
                "the CRI plugin is not ready: {last}\n{}",
                self.log_tail()
            ));
        }
        Ok(())
    }

    /// The end of containerd's log (for setup errors).
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.path("containerd.log")).unwrap_or_default();
        crate::tail(&log, 4000)
    }

    /// `ctr` on the private socket, namespace `k8s.io`.
    pub fn ctr(&self, args: &[&str]) -> Result<Output, String> {
        let mut cmd = Command::new("ctr");
        cmd.current_dir(self.dir.path())
            .env("CONTAINERD_SNAPSHOTTER", Self::snapshotter())
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE])
            .args(args);
        run(&mut cmd, CMD_TIMEOUT)
    }

    /// Writes the busybox rootfs as a one-layer OCI image (its default
    /// command sleeps, as a pause container does) and imports it.
    fn import_image(&self) -> Result<(), String> {
        let work = self.path("image");
        let layer = rootfs_tar(&work)?;
        let layout = work.join("oci");
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| format!("mkdir {}: {e}", blobs.display()))?;
        let blob = |data: &[u8]| -> Result<(String, usize), String> {
            let hex = format!("{:x}", Sha256::digest(data));
            fs::write(blobs.join(&hex), data).map_err(|e| format!("blob {hex}: {e}"))?;
            Ok((format!("sha256:{hex}"), data.len()))
        };
        let layer = fs::read(&layer).map_err(|e| format!("{}: {e}", layer.display()))?;
        let (layer_digest, layer_size) = blob(&layer)?;
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                // pid 1 without a SIGTERM handler: the pod's pause. The
                // CRI plugin stops sandboxes with SIGKILL.
                "Cmd": ["sleep", "2147483647"],
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let (config_digest, config_size) = blob(config.to_string().as_bytes())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }],
        });
        let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes())?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": IMAGE,
                    "org.opencontainers.image.ref.name": "latest",
                },
            }],
        });
        fs::write(layout.join("index.json"), index.to_string())
            .map_err(|e| format!("index.json: {e}"))?;
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .map_err(|e| format!("oci-layout: {e}"))?;
        let archive = work.join("image.oci.tar");
        run(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&archive)
                .arg("."),
            CMD_TIMEOUT,
        )?
        .success()?;
        let archive = archive.to_str().ok_or("temp dir is not UTF-8")?;
        self.ctr(&["images", "import", archive])?.success()?;
        // The CRI plugin learns of the import from containerd's image
        // events, asynchronously: wait until it knows the image, or
        // RunPodSandbox would try to pull it.
        let mut last = String::new();
        let known = wait_for(Duration::from_secs(20), || {
            let Some(channel) = self.channel.clone() else {
                return false;
            };
            let req = api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                verbose: false,
            };
            let r = self
                .rt
                .block_on(async move { ImageServiceClient::new(channel).image_status(req).await });
            match r {
                Ok(r) => r.into_inner().image.is_some(),
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        if known {
            Ok(())
        } else {
            Err(format!(
                "the CRI plugin does not see {IMAGE} after the import {last}"
            ))
        }
    }

    /// Calls one CRI method with a timeout; the error names the method and
    /// shows the request.
    pub fn call<Q, T, F>(
        &self,
        rpc: &str,
        req: Q,
        f: impl FnOnce(Client, Q) -> F,
    ) -> Result<T, String>
    where
        Q: Debug,
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let shown = format!("{req:?}");
        self.try_call(req, f).map_err(|s| {
            // When containerd answers late or vaguely, its log says why.
            let logged = self.last_logged_error();
            // A timeout says nothing by itself: put the log's word first.
            let why = if s.code() == tonic::Code::DeadlineExceeded {
                format!(" (containerd's last error: {})", crate::tail(&logged, 600))
            } else {
                String::new()
            };
            format!(
                "{rpc} failed: {:?}: {}{why}\n  request: {shown}\n  containerd's last error: {logged}",
                s.code(),
                s.message()
            )
        })
    }

    /// The message of the last `level=error` line of containerd's log.
    pub fn last_logged_error(&self) -> String {
        let log = fs::read_to_string(self.path("containerd.log")).unwrap_or_default();
        log.lines()
            .rev()
            .find(|l| l.contains("level=error"))
            .map(|l| l.split_once("msg=").map_or(l, |(_, m)| m).to_string())
            .unwrap_or_default()
    }

    /// Calls one CRI method with a timeout (`DeadlineExceeded` when it
    /// passes), for tests that expect an error.
    pub fn try_call<Q, T, F>(
        &self,
        req: Q,
        f: impl FnOnce(Client, Q) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.try_call_within(CRI_TIMEOUT, req, f)
    }

    fn try_call_within<Q, T, F>(
        &self,
        timeout: Duration,
        req: Q,
        f: impl FnOnce(Client, Q) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let Some(channel) = self.channel.clone() else {
            return Err(tonic::Status::unavailable("not connected"));
        };
        let client = RuntimeServiceClient::new(channel);
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, f(client, req)).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {timeout:?}"
                ))),
            }
        })
    }

    /// The kubelet's `cgroup_parent` of pod `uid`: a path with cgroupfs, a
    /// slice (the uid's dashes as underscores) with systemd.
    fn pod_parent(&self, uid: &str) -> String {
        if self.systemd {
            format!("{}-pod{}.slice", self.top_cgroup, uid.replace('-', "_"))
        } else {
            format!("/{}/pod{uid}", self.top_cgroup)
        }
    }

    /// A pod (RunPodSandbox with the kubelet's config), stopped and removed
    /// with all its containers when the guard drops, whatever the test's
    /// outcome.
    pub fn pod(&self, tag: &str) -> Result<Pod<'_>, String> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{tag}-{n}");
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        let log_dir = self
            .path("pods")
            .join(format!("{POD_NAMESPACE}_{name}_{uid}"));
        // The kubelet makes the log directory and the files it mounts
        // (/etc/hosts) before it asks for the sandbox.
        let data = self.path("pod-data").join(&uid);
        for d in [&log_dir, &data] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        fs::write(
            data.join("etc-hosts"),
            format!("127.0.0.1\tlocalhost\n{POD_IP}\t{name}\n"),
        )
        .map_err(|e| format!("etc-hosts: {e}"))?;
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name.as_str()),
            ("io.kubernetes.pod.namespace", POD_NAMESPACE),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace: POD_NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: log_dir.display().to_string(),
            dns_config: Some(api::DnsConfig {
                servers: vec!["127.0.0.53".into()],
                searches: vec![format!("{POD_NAMESPACE}.svc.cluster.local")],
                options: vec!["ndots:5".into()],
            }),
            labels,
            annotations: [("kubernetes.io/config.source".into(), "api".into())].into(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: self.pod_parent(&uid),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: self.handler().to_string(),
        };
        let mut pod = Pod {
            cri: self,
            id: String::new(),
            name,
            uid,
            config,
            data,
        };
        pod.id = self
            .call("RunPodSandbox", req, |mut c, r| async move {
                c.run_pod_sandbox(r).await
            })?
            .pod_sandbox_id;
        Ok(pod)
    }

    /// ContainerStatus (verbose: with containerd's `info`, which has the
    /// pid).
    pub fn container_status(&self, id: &str) -> Result<ContainerInfo, String> {
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let resp = self.call("ContainerStatus", req, |mut c, r| async move {
            c.container_status(r).await
        })?;
        let status = resp.status.ok_or("ContainerStatus: no status")?;
        let info: serde_json::Value = resp
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        Ok(ContainerInfo {
            pid: info["pid"].as_u64().unwrap_or(0) as u32,
            status,
        })
    }

    /// Waits until the container is in `state` (RUNNING, EXITED).
    pub fn wait_state(
        &self,
        id: &str,
        state: api::ContainerState,
        timeout: Duration,
    ) -> Result<ContainerInfo, String> {
        let mut last = Err(String::new());
        wait_for(timeout, || {
            last = self.container_status(id);
            last.as_ref().is_ok_and(|s| s.status.state == state as i32)
        });
        match last {
            Ok(s) if s.status.state == state as i32 => Ok(s),
            Ok(s) => Err(format!(
                "container {id}: state {:?} (exit code {}, reason {:?}, message {:?}) after \
                 {timeout:?}, want {state:?} (containerd's last error: {})",
                api::ContainerState::try_from(s.status.state),
                s.status.exit_code,
                s.status.reason,
                s.status.message,
                crate::tail(&self.last_logged_error(), 600)
            )),
            Err(e) => Err(e),
        }
    }

    /// ExecSync: stdout, stderr, exit code.
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> Result<(String, String, i32), String> {
        let req = api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        };
        let r = self.call(
            "ExecSync",
            req,
            |mut c, r| async move { c.exec_sync(r).await },
        )?;
        Ok((
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code,
        ))
    }

    /// StopContainer with the kubelet's grace period in seconds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<(), String> {
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        self.call("StopContainer", req, |mut c, r| async move {
            c.stop_container(r).await
        })
        .map(drop)
    }

    /// RemoveContainer.
    pub fn remove_container(&self, id: &str) -> Result<(), String> {
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call("RemoveContainer", req, |mut c, r| async move {
            c.remove_container(r).await
        })
        .map(drop)
    }

    /// StopPodSandbox.
    pub fn stop_pod(&self, id: &str) -> Result<(), String> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("StopPodSandbox", req, |mut c, r| async move {
            c.stop_pod_sandbox(r).await
        })
        .map(drop)
    }

    /// RemovePodSandbox.
    pub fn remove_pod(&self, id: &str) -> Result<(), String> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("RemovePodSandbox", req, |mut c, r| async move {
            c.remove_pod_sandbox(r).await
        })
        .map(drop)
    }

    /// StopPodSandbox and RemovePodSandbox for the cleanup, each bounded by
    /// [`CLEANUP_TIMEOUT`]; a pod that fails is left to the teardown.
    fn cleanup_pod(&self, id: &str) {
        let stop = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let remove = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let ok = self
            .try_call_within(CLEANUP_TIMEOUT, stop, |mut c, r| async move {
                c.stop_pod_sandbox(r).await
            })
            .is_ok()
            && self
                .try_call_within(CLEANUP_TIMEOUT, remove, |mut c, r| async move {
                    c.remove_pod_sandbox(r).await
                })
                .is_ok();
        if !ok {
            self.given_up.lock().expect("given_up").push(id.to_string());
        }
    }

    /// The ids of the pods the CRI plugin lists.
    pub fn list_pods(&self) -> Result<Vec<String>, String> {
        let r = self.call(
            "ListPodSandbox",
            api::ListPodSandboxRequest::default(),
            |mut c, r| async move { c.list_pod_sandbox(r).await },
        )?;
        Ok(r.items.into_iter().map(|p| p.id).collect())
    }

    /// The ids of the containers the CRI plugin lists (of one pod, or all).
    pub fn list_containers(&self, pod: Option<&str>) -> Result<Vec<String>, String> {
        let req = api::ListContainersRequest {
            filter: pod.map(|p| api::ContainerFilter {
                pod_sandbox_id: p.into(),
                ..Default::default()
            }),
        };
        let r = self.call("ListContainers", req, |mut c, r| async move {
            c.list_containers(r).await
        })?;
        Ok(r.containers.into_iter().map(|c| c.id).collect())
    }

    /// The runtime's own `state ID` in the handler's root.
    pub fn runtime_state(&self, id: &str) -> Result<serde_json::Value, String> {
        let out = run(
            Command::new(&self.runtime.binary)
                .arg("--root")
                .arg(self.state_root())
                .args(["state", id]),
            CMD_TIMEOUT,
        )?
        .success()?;
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("state is not JSON ({e}): {}", out.stdout))
    }

    /// The pids of the shims our daemon started (they carry its socket),
    /// and the sockets they listen on.
    fn shims(&self) -> (Vec<u32>, Vec<PathBuf>) {
        let sock = self.socket().display().to_string();
        let pids = processes_matching(|c| c.contains("containerd-shim") && c.contains(&sock));
        // containerd 1.6 names a shim's socket
        // /run/containerd/s/<sha256 of "<address>/<namespace>/<shim id>">;
        // a shim killed by force leaves it behind.
        let sockets = pids
            .iter()
            .filter_map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<String> = cmdline
                    .split(|&b| b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let id = args
                    .iter()
                    .position(|a| a == "-id")
                    .and_then(|i| args.get(i + 1))?;
                let key = format!("{sock}/{NAMESPACE}/{id}");
                Some(PathBuf::from(format!(
                    "/run/containerd/s/{:x}",
                    Sha256::digest(key.as_bytes())
                )))
            })
            .collect();
        (pids, sockets)
    }

    /// Last-resort cleanup of what a failing runtime left: the runtime's
    /// own `delete --force` for every state entry, then SIGKILL for every
    /// process still in this run's cgroups, then the cgroups themselves.
    fn force_cleanup(&self) {
        if let Ok(entries) = fs::read_dir(self.state_root()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = run(
                    Command::new(&self.runtime.binary)
                        .arg("--root")
                        .arg(self.state_root())
                        .args(["delete", "--force", &id]),
                    CMD_TIMEOUT,
                );
            }
        }
        if self.systemd {
            // The pods' slices are systemd's units: stopping the top one
            // stops (kills) everything below it.
            stop_unit(&format!("{}.slice", self.top_cgroup));
        }
        remove_cgroup_tree(&self.top_cgroup());
    }
}

/// `systemctl stop UNIT`, as the kubelet's systemd cgroup manager does
/// when a pod is gone; a unit that is not loaded is no error.
fn stop_unit(unit: &str) {
    let _ = run(Command::new("systemctl").args(["stop", unit]), CMD_TIMEOUT);
}

impl Drop for Cri {
    fn drop(&mut self) {
        if self.daemon.is_some() && self.channel.is_some() {
            // Whatever a test left: pods (with their containers).
            let given_up = self.given_up.lock().expect("given_up").clone();
            for id in self.list_pods().unwrap_or_default() {
                if !given_up.contains(&id) {
                    self.cleanup_pod(&id);
                }
            }
        }
        let (shims, sockets) = self.shims();
        self.channel = None;
        if let Some(mut daemon) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let stopped = wait_for(Duration::from_secs(10), || {
                matches!(daemon.try_wait(), Ok(Some(_)))
            });
            if !stopped {
                let _ = daemon.kill();
            }
            let _ = daemon.wait();
        }
        // A shim outlives the daemon while its tasks live: end them by pid.
        kill_leftovers(&shims);
        for s in sockets {
            let _ = fs::remove_file(s);
        }
        self.force_cleanup();
        unmount_under(self.dir.path());
    }
}

/// What ContainerStatus says, with the pid from its verbose info.
pub struct ContainerInfo {
    pub pid: u32,
    pub status: api::ContainerStatus,
}

/// The kubelet's namespaces for a pod without `hostNetwork`, `hostPID`,
/// `hostIPC` or `shareProcessNamespace`: network and IPC per pod, PID per
/// container.
pub fn pod_namespaces() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// `seccompProfile: Unconfined`, the kubelet's default.
fn unconfined() -> api::SecurityProfile {
    api::SecurityProfile {
        profile_type: api::security_profile::ProfileType::Unconfined as i32,
        ..Default::default()
    }
}

/// The hugepage sizes of this host as the kubelet names them ("2MB",
/// "1GB"): it sends a limit for each, 0 unless the pod asks for some.
fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes
        .into_iter()
        .map(|kb| {
            if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else {
                format!("{}MB", kb >> 10)
            }
        })
        .collect()
}

/// A container's resources as the kubelet computes them (cgroupfs, v1):
/// the CFS period and quota of the CPU limit, shares from the request,
/// the memory limit, an OOM score, and a zero limit for every hugepage
/// size.
pub fn kubelet_resources(cpu_milli: i64, memory: i64) -> api::LinuxContainerResources {
    api::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: cpu_milli * 100,
        cpu_shares: cpu_milli * 1024 / 1000,
        memory_limit_in_bytes: memory,
        oom_score_adj: 968,
        hugepage_limits: hugepage_sizes()
            .into_iter()
            .map(|page_size| api::HugepageLimit {
                page_size,
                limit: 0,
            })
            .collect(),
        ..Default::default()
    }
}

/// One pod sandbox; stopped and removed (containers included) on drop,
/// then its pod cgroup is removed, as the kubelet does.
pub struct Pod<'a> {
    cri: &'a Cri,
    pub id: String,
    pub name: String,
    pub uid: String,
    pub config: api::PodSandboxConfig,
    /// The kubelet's per-pod files (/etc/hosts, termination logs).
    data: PathBuf,
}

impl Pod<'_> {
    /// The pod's log directory (`log_directory`).
    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// The pod's cgroup, relative to each hierarchy.
    pub fn cgroup(&self) -> String {
        if self.cri.systemd {
            let parent = self.cri.pod_parent(&self.uid);
            format!("{}.slice/{parent}", self.cri.top_cgroup)
        } else {
            format!("{}/pod{}", self.cri.top_cgroup, self.uid)
        }
    }

    /// The cgroup of container (or sandbox) `id` in this pod, relative to
    /// each hierarchy: containerd's `<parent>:cri-containerd:<id>` is the
    /// scope `cri-containerd-<id>.scope` with systemd.
    pub fn container_cgroup(&self, id: &str) -> String {
        if self.cri.systemd {
            format!("{}/cri-containerd-{id}.scope", self.cgroup())
        } else {
            format!("{}/{id}", self.cgroup())
        }
    }

    /// PodSandboxStatus (verbose): the status and containerd's info (pid,
    /// runtimeSpec).
    pub fn status(&self) -> Result<(api::PodSandboxStatus, serde_json::Value), String> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: self.id.clone(),
            verbose: true,
        };
        let r = self
            .cri
            .call("PodSandboxStatus", req, |mut c, r| async move {
                c.pod_sandbox_status(r).await
            })?;
        let info = r
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        Ok((r.status.ok_or("PodSandboxStatus: no status")?, info))
    }

    /// The host pid of the pod's pause process.
    pub fn pause_pid(&self) -> Result<u32, String> {
        let (_, info) = self.status()?;
        match info["pid"].as_u64() {
            Some(p) if p > 0 => Ok(p as u32),
            _ => Err(format!("PodSandboxStatus info has no pid: {info}")),
        }
    }

    /// A container config as the kubelet writes it: the image, the command,
    /// a log path under the pod's log directory, the kubelet's labels and
    /// annotations, its /etc/hosts and /dev/termination-log mounts, the
    /// pod's namespaces, its default masked and read-only paths, seccomp
    /// unconfined and the resources of a 500m / 128 MiB limit.
    pub fn container_config(&self, name: &str, command: &[&str]) -> api::ContainerConfig {
        let term_log = self.data.join(format!("termination-log-{name}"));
        let _ = fs::write(&term_log, "");
        let _ = fs::create_dir_all(self.log_dir().join(name));
        let map = |kv: &[(&str, &str)]| -> HashMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            envs: vec![api::KeyValue {
                key: "PHANTOM_CRI_POD".into(),
                value: self.name.clone(),
            }],
            mounts: vec![
                api::Mount {
                    container_path: "/etc/hosts".into(),
                    host_path: self.data.join("etc-hosts").display().to_string(),
                    ..Default::default()
                },
                api::Mount {
                    container_path: "/dev/termination-log".into(),
                    host_path: term_log.display().to_string(),
                    ..Default::default()
                },
            ],
            labels: map(&[
                ("io.kubernetes.container.name", name),
                ("io.kubernetes.pod.name", &self.name),
                ("io.kubernetes.pod.namespace", POD_NAMESPACE),
                ("io.kubernetes.pod.uid", &self.uid),
            ]),
            annotations: map(&[
                ("io.kubernetes.container.restartCount", "0"),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log",
                ),
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
            ]),
            log_path: format!("{name}/0.log"),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(kubelet_resources(500, 128 << 20)),
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// CreateContainer in this pod.
    pub fn create(&self, config: api::ContainerConfig) -> Result<String, String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        Ok(self
            .cri
            .call("CreateContainer", req, |mut c, r| async move {
                c.create_container(r).await
            })?
            .container_id)
    }

    /// StartContainer.
    pub fn start(&self, id: &str) -> Result<(), String> {
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.cri
            .call("StartContainer", req, |mut c, r| async move {
                c.start_container(r).await
            })
            .map(drop)
    }

    /// Creates and starts a container from [`Self::container_config`];
    /// returns its id and, once it runs, its host pid.
    pub fn run(&self, name: &str, command: &[&str]) -> Result<(String, u32), String> {
        self.run_config(self.container_config(name, command))
    }

    /// Creates and starts a container; returns its id and host pid.
    pub fn run_config(&self, config: api::ContainerConfig) -> Result<(String, u32), String> {
        let id = self.create(config)?;
        self.start(&id)?;
        let info = self.cri.wait_state(
            &id,
            api::ContainerState::ContainerRunning,
            Duration::from_secs(20),
        )?;
        Ok((id, info.pid))
    }

    /// The cgroup directories (one per hierarchy) of container or sandbox
    /// `id` in this pod.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        HostLeftovers::cgroups(&[&self.container_cgroup(id)])
    }

    /// StopPodSandbox, then RemovePodSandbox.
    pub fn stop_and_remove(&self) -> Result<(), String> {
        self.cri.stop_pod(&self.id)?;
        self.cri.remove_pod(&self.id)
    }

    /// Removes the pod cgroup in every hierarchy, as the kubelet does once
    /// the pod is gone; fails if a container's cgroup is still in it.
    pub fn remove_pod_cgroup(&self) -> Result<(), String> {
        let mut left = Vec::new();
        for dir in HostLeftovers::cgroups(&[&self.cgroup()]) {
            if let Ok(entries) = fs::read_dir(&dir) {
                left.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            if !self.cri.systemd {
                let _ = fs::remove_dir(&dir);
            }
        }
        if self.cri.systemd {
            stop_unit(&self.cri.pod_parent(&self.uid));
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("cgroups left in the pod cgroup: {left:?}"))
        }
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            self.cri.cleanup_pod(&self.id);
        }
        let _ = self.remove_pod_cgroup();
    }
}

/// The pids of the processes whose command line (NULs as spaces) matches.
pub fn processes_matching(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| pred(&String::from_utf8_lossy(&c).replace('\0', " ")))
        })
        .collect()
}

/// Mount points whose path contains any of `needles`.
pub fn mounts_containing(needles: &[&str]) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            needles.iter().any(|n| !n.is_empty() && s.contains(n))
        })
        .collect()
}

/// Kills every process in the cgroup `top` (relative to each hierarchy)
/// and its descendants, then removes them, deepest first.
fn remove_cgroup_tree(top: &str) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut dirs = Vec::new();
    for root in HostLeftovers::cgroups(&[top]) {
        if root.is_dir() {
            walk(&root, &mut dirs);
        }
    }
    for d in &dirs {
        // A frozen cgroup would keep its processes from dying.
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
        let pids: Vec<u32> = fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        kill_leftovers(&pids);
    }
    // `walk` lists children before their parent.
    for d in &dirs {
        let _ = wait_for(Duration::from_secs(2), || {
            fs::remove_dir(d).is_ok() || !d.exists()
        });
    }
}
