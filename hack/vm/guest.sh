#!/bin/bash
# The VM test bed's guest side, run by phantom-vm-test.service as root in a
# systemd + pure cgroup v2 Debian 12 guest. It mounts the 9p share, unpacks
# the run's tarball (phantom, rst, rst-checker, a busybox rootfs, this
# script) to the guest's disk, runs the tests and writes results.tsv
# (`suite<TAB>case<TAB>pass|fail|skip`) and a `done` marker into the share.
# The unit powers the VM off when this exits.
#
# The copy baked into the image (/usr/local/sbin/phantom-vm-guest) only
# mounts the share and runs the guest.sh of the tarball: changing the tests
# needs no new image.
set -uo pipefail

share=/mnt/share
work=/var/lib/phantom-vm

if [[ -z ${PHANTOM_VM_STAGE2:-} ]]; then
	mkdir -p "$share"
	if ! mountpoint -q "$share"; then
		modprobe 9pnet_virtio 2>/dev/null || true
		mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 share "$share" || {
			echo "phantom-vm-guest: cannot mount the 9p share" >&2
			exit 1
		}
	fi
	rm -rf "$work"
	mkdir -p "$work"
	tar -C "$work" -xf "$share/bundle.tar" || {
		echo "phantom-vm-guest: cannot unpack $share/bundle.tar" >&2
		echo "setup	unpack	fail" >"$share/results.tsv"
		touch "$share/done"
		exit 1
	}
	PHANTOM_VM_STAGE2=1 exec /bin/bash "$work/guest.sh" "$@"
fi


# ---- stage 2: the tests -------------------------------------------------
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
cd "$work"
install -m 0755 bin/phantom bin/phantom-server /usr/local/bin/
results=$share/results.tsv
logs=$share/logs
: >"$results"
rm -f "$share/done"
mkdir -p "$logs"
exec > >(tee -a "$share/guest.log") 2>&1
tee_pid=$!
filter=$(cat "$work/filter" 2>/dev/null || true)
rootfs=$work/rootfs
crun=$(command -v crun)
runc=$(command -v runc)
declare -A runtime=([phantom]=/usr/local/bin/phantom [crun]=$crun [runc]=$runc)
started=$SECONDS

log() { echo "vm-guest [$((SECONDS - started))s]: $*"; }
# record SUITE CASE RESULT
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
# wanted STEP: the step runs unless VM_FILTER (a regex) excludes it.
wanted() { [[ -z $filter || $1 =~ $filter ]]; }

# ---- the machine: systemd as PID 1, pure cgroup v2 ----------------------
log "up $(cut -d" " -f1 /proc/uptime) s; kernel $(uname -r), $(systemctl --version | head -n1), $(podman --version), crun $(crun --version | head -n1 | awk '{print $3}'), runc $(runc --version | head -n1 | awk '{print $3}')"
record setup systemd-pid1 "$([[ $(cat /proc/1/comm) == systemd && -d /run/systemd/system ]] && echo pass || echo fail)"
record setup cgroup2-only "$([[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] && ! grep -q ' cgroup ' /proc/mounts && echo pass || echo fail)"
record setup dbus "$(busctl --system list >/dev/null 2>&1 && echo pass || echo fail)"
log "controllers: $(cat /sys/fs/cgroup/cgroup.controllers); system.slice: $(cat /sys/fs/cgroup/system.slice/cgroup.subtree_control)"

# ---- the conformance suite (runtime-spec-tests) -------------------------
# rst_run RUNTIME DRIVER: one TSV line per TAP line; rst's own exit status
# (its expected.tsv) is not ours: hack/vm/expected.tsv judges.
rst_run() {
	local rt=$1 drv=$2 suite="rst/$1/$2" tap=$logs/rst-$1-$2.tap t=$SECONDS
	local sd=0
	[[ $drv == systemd ]] && sd=1
	log "rst: $rt, $drv driver ..."
	RUNTIME=${runtime[$rt]} RST_RUNTIME_NAME=$rt RST_SYSTEMD_CGROUP=$sd \
		RST_CHECKER=$work/bin/rst-checker RST_ROOTFS=$rootfs RST_EXPECTED=$work/rst-expected.tsv \
		timeout -k 10 1200 "$work/bin/rst" >"$tap.part" 2>&1 </dev/null
	local rc=$?
	mv "$tap.part" "$tap"
	awk -v suite="$suite" '
		/^(not )?ok [0-9]+ - / {
			res = ($1 == "not") ? "fail" : "pass"
			line = $0; sub(/^(not )?ok [0-9]+ - /, "", line)
			name = line; sub(/ .*/, "", name)
			if (res == "pass" && line ~ / # SKIP/) res = "skip"
			printf "%s\t%s\t%s\n", suite, name, res
		}' "$tap" >>"$results"
	log "rst: $rt, $drv: $(tail -n1 "$tap") (rst exit $rc, $((SECONDS - t)) s)"
	if ! grep -qE '^[0-9]+ passed, [0-9]+ failed' "$tap"; then
		record "$suite" "(suite)" fail
		tail -n 20 "$tap"
	fi
}
for rt in phantom crun runc; do
	for drv in cgroupfs systemd; do
		wanted "rst/$rt/$drv" && rst_run "$rt" "$drv"
	done
done

# ---- Podman --------------------------------------------------------------
# A local image from the busybox rootfs: no registry.
podman_ready=0
if wanted podman; then
	log "podman: importing the busybox rootfs as localhost/busybox"
	if tar -C "$rootfs" -cf "$work/rootfs.tar" . &&
		podman import -q "$work/rootfs.tar" localhost/busybox:latest >/dev/null; then
		podman_ready=1
	fi
	record podman import "$([[ $podman_ready == 1 ]] && echo pass || echo fail)"
fi
# podman_case RT MGR NAME EXPECTED PODMAN-ARGS... -- COMMAND...
podman_case() {
	local rt=$1 mgr=$2 name=$3 want=$4 suite="podman/$1/$2"
	shift 4
	local args=() out rc t=$SECONDS
	while [[ $1 != -- ]]; do
		args+=("$1")
		shift
	done
	shift
	if [[ $podman_ready != 1 ]]; then
		record "$suite" "$name" skip
		return
	fi
	out=$(timeout -k 10 180 podman --runtime "${runtime[$rt]}" --cgroup-manager "$mgr" \
		run --rm --network none "${args[@]}" localhost/busybox "$@" 2>&1)
	rc=$?
	out=$(echo $out)
	if [[ $rc == 0 && $out == "$want" ]]; then
		record "$suite" "$name" pass
	else
		record "$suite" "$name" fail
		log "podman $rt $mgr $name: exit $rc, got: $out (want: $want)"
	fi
	log "podman $rt $mgr $name: $((SECONDS - t)) s"
}
# podman_lifecycle RT MGR: a detached container is updated (`podman
# update`: the runtime's `update`, SetUnitProperties under systemd),
# paused and resumed, then removed: its cgroup (the scope) must be gone.
podman_lifecycle() {
	local rt=$1 mgr=$2 suite="podman/$1/$2" name=life-$1-$2 p=(podman --runtime "${runtime[$1]}" --cgroup-manager "$2")
	local id cg out t=$SECONDS
	if [[ $podman_ready != 1 ]]; then
		for c in update pause-resume rm-cgroup; do record "$suite" "$c" skip; done
		return
	fi
	id=$(timeout 120 "${p[@]}" run -d --name "$name" --network none --memory 64m localhost/busybox sleep 600 2>&1)
	if [[ $? != 0 ]]; then
		log "podman $rt $mgr lifecycle: run -d failed: $id"
		for c in update pause-resume rm-cgroup; do record "$suite" "$c" fail; done
		return
	fi
	cg=$(awk -F: '$1 == "0" { print $3 }' "/proc/$("${p[@]}" inspect -f '{{.State.Pid}}' "$name")/cgroup" 2>/dev/null)
	log "podman $rt $mgr lifecycle: cgroup $cg"
	out=$(timeout 120 "${p[@]}" update --memory 128m "$name" 2>&1 &&
		timeout 60 "${p[@]}" exec "$name" cat /sys/fs/cgroup/memory.max 2>&1)
	out=$(echo $out)
	if [[ $out == *134217728 ]]; then record "$suite" update pass; else
		record "$suite" update fail
		log "podman $rt $mgr update: got $out (want 134217728)"
	fi
	out=$(timeout 60 "${p[@]}" pause "$name" >/dev/null 2>&1 && "${p[@]}" inspect -f '{{.State.Status}}' "$name" 2>&1;
		timeout 60 "${p[@]}" unpause "$name" >/dev/null 2>&1 && "${p[@]}" inspect -f '{{.State.Status}}' "$name" 2>&1)
	out=$(echo $out)
	if [[ $out == "paused running" ]]; then record "$suite" pause-resume pass; else
		record "$suite" pause-resume fail
		log "podman $rt $mgr pause/unpause: got $out (want: paused running)"
	fi
	timeout 120 "${p[@]}" rm -f -t 0 "$name" >/dev/null 2>&1
	if [[ -n $cg && ! -d /sys/fs/cgroup$cg ]]; then record "$suite" rm-cgroup pass; else
		record "$suite" rm-cgroup fail
		log "podman $rt $mgr rm: cgroup ${cg:-?} left"
	fi
	log "podman $rt $mgr lifecycle: $((SECONDS - t)) s"
}
# podman_reload RT MGR: limits set at run and by `update` survive
# `systemctl daemon-reload` (systemd rewrites a unit's cgroup files from its
# properties: a driver that only wrote the files loses them).
podman_reload() {
	local rt=$1 mgr=$2 suite="podman/$1/$2" name=reload-$1-$2 p=(podman --runtime "${runtime[$1]}" --cgroup-manager "$2")
	local out t=$SECONDS
	if [[ $podman_ready != 1 ]]; then
		record "$suite" daemon-reload skip
		return
	fi
	out=$(timeout 120 "${p[@]}" run -d --name "$name" --network none --memory 64m --pids-limit 50 --cpus 0.5 \
		localhost/busybox sleep 600 2>&1 &&
		timeout 120 "${p[@]}" update --memory 96m "$name" 2>&1 &&
		systemctl daemon-reload 2>&1 && sleep 1 &&
		timeout 60 "${p[@]}" exec "$name" cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max 2>&1)
	out=$(echo $out)
	if [[ $out == *"100663296 50 50000 100000" ]]; then record "$suite" daemon-reload pass; else
		record "$suite" daemon-reload fail
		log "podman $rt $mgr daemon-reload: got $out (want: 100663296 50 50000 100000)"
	fi
	timeout 120 "${p[@]}" rm -f -t 0 "$name" >/dev/null 2>&1
	log "podman $rt $mgr daemon-reload: $((SECONDS - t)) s"
}
for rt in phantom crun runc; do
	for mgr in systemd cgroupfs; do
		wanted "podman/$rt/$mgr" || continue
		podman_case "$rt" "$mgr" memory-pids "67108864 50" --memory 64m --pids-limit 50 -- \
			cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max
		podman_case "$rt" "$mgr" cpus "50000 100000" --cpus 0.5 -- \
			cat /sys/fs/cgroup/cpu.max
		podman_case "$rt" "$mgr" true "hello" -- echo hello
		podman_lifecycle "$rt" "$mgr"
		podman_reload "$rt" "$mgr"
	done
done

# ---- containerd: ctr run through the runc v2 shim --------------------------
ctr_ready=0
if wanted ctr; then
	log "ctr: starting containerd, importing localhost/busybox"
	if [[ $podman_ready == 1 ]] && systemctl start containerd &&
		podman save -q -o "$work/busybox-docker.tar" localhost/busybox:latest &&
		ctr -n vmtest image import "$work/busybox-docker.tar" >/dev/null &&
		ctr -n vmtest image ls -q | grep -qx localhost/busybox:latest; then
		ctr_ready=1
	fi
	record ctr import "$([[ $ctr_ready == 1 ]] && echo pass || echo fail)"
fi
# ctr_case RT DRIVER: a detached `ctr run` container's memory.max, read on
# the host from its cgroup (ctr's default spec mounts no cgroup inside; crun
# puts the process in a `container` sub-cgroup of the scope that holds the
# limit, hence the parent too), then its cgroup must be gone after delete.
ctr_n=0
ctr_case() {
	local rt=$1 drv=$2 suite="ctr/$1/$2" id out pid cg mem t=$SECONDS
	local args=(--runc-binary "${runtime[$rt]}" --memory-limit 67108864)
	ctr_n=$((ctr_n + 1))
	id=vm-$rt-$drv-$ctr_n
	# The systemd driver wants a slice:prefix:name cgroupsPath (ctr's
	# default is a cgroupfs path), as the CRI plugin passes with
	# SystemdCgroup = true.
	[[ $drv == systemd ]] && args+=(--runc-systemd-cgroup --cgroup "system.slice:ctr:$id")
	if [[ $ctr_ready != 1 ]]; then
		record "$suite" memory skip
		record "$suite" delete-cgroup skip
		return
	fi
	out=$(timeout -k 10 120 ctr -n vmtest run -d "${args[@]}" localhost/busybox:latest "$id" sleep 600 2>&1)
	pid=$(ctr -n vmtest task ls 2>/dev/null | awk -v id="$id" '$1 == id { print $2 }')
	cg=$(awk -F: '$1 == "0" { print $3 }' "/proc/${pid:-0}/cgroup" 2>/dev/null)
	mem=$(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null)
	[[ $mem == max ]] && mem=$(cat "/sys/fs/cgroup${cg%/*}/memory.max" 2>/dev/null)
	if [[ -n $cg && $mem == 67108864 ]]; then
		record "$suite" memory pass
	else
		record "$suite" memory fail
		log "ctr $rt $drv: run: $(echo $out); pid ${pid:-none}, cgroup ${cg:-none}, memory.max ${mem:-none} (want 67108864)"
	fi
	timeout 60 ctr -n vmtest task kill -s KILL "$id" >/dev/null 2>&1
	for _ in $(seq 50); do
		ctr -n vmtest task ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING" { f = 1 } END { exit !f }' || break
		sleep 0.2
	done
	out=$(timeout 60 ctr -n vmtest task delete "$id" 2>&1; timeout 60 ctr -n vmtest container delete "$id" 2>&1)
	if [[ -n $cg && ! -d /sys/fs/cgroup$cg ]]; then
		record "$suite" delete-cgroup pass
	else
		record "$suite" delete-cgroup fail
		log "ctr $rt $drv: delete: $(echo $out); cgroup ${cg:-none} left"
	fi
	log "ctr $rt $drv: cgroup $cg, $((SECONDS - t)) s"
}
for rt in phantom crun runc; do
	for drv in systemd cgroupfs; do
		wanted "ctr/$rt/$drv" && ctr_case "$rt" "$drv"
	done
done

# ---- the kubelet's path: containerd's CRI plugin ---------------------------
# integration-tests/tests/cri.rs, built on the host: the suite brings its own
# containerd and drives it with the kubelet's requests. With the systemd
# driver the handler has SystemdCgroup = true and the pods' parents are
# slices, as on a kubeadm node; with cgroupfs they are paths. With the
# release build the whole suite (13 tests) takes about a minute under TCG.
cri_all=(cri_run_pod_sandbox cri_container_joins_pod cri_exec_sync cri_exec_sync_timeout
	cri_tty_container cri_container_logs cri_update_container_resources cri_container_stats
	cri_stop_container_timeout_0 cri_stop_container_sigterm cri_stop_container_grace_sigkill
	cri_remove_container cri_pod_lifecycle_leaves_nothing)
# cri_case RT DRIVER TESTS...
cri_case() {
	local rt=$1 drv=$2 suite="cri/$1/$2" out=$logs/cri-$1-$2.log t0=$SECONDS sd=0 rc
	local skip=() name result
	shift 2
	local cri_tests=("$@")
	[[ $drv == systemd ]] && sd=1
	log "cri: $rt, $drv driver ..."
	for name in $("$work/bin/cri-tests" --list 2>/dev/null | sed -n 's/: test$//p'); do
		[[ " ${cri_tests[*]} " == *" $name "* ]] || skip+=(--skip "$name")
	done
	RUNTIME=$rt PHANTOM_BIN=${runtime[phantom]} CRI_SYSTEMD_CGROUP=$sd PHANTOM_SRC=$work \
		timeout -k 10 900 "$work/bin/cri-tests" --test-threads 1 --exact "${skip[@]}" >"$out" 2>&1 </dev/null
	rc=$?
	# A pass is libtest's `test NAME ... ok`; a failure the suite's own
	# `cri: NAME FAILED: why`, printed when it happens (the line may share
	# libtest's); a test with neither (the suite was cut short) failed.
	for name in "${cri_tests[@]}"; do
		if grep -qE "^test $name +\.\.\. ok\b" "$out"; then
			result=pass
		elif grep -qE "^test $name +\.\.\. ignored\b" "$out"; then
			result=skip
		else
			result=fail
			log "cri $rt $drv $name: $(grep -oE "cri: $name FAILED: .{0,400}" "$out" | head -n1 || echo 'no result')"
		fi
		record "$suite" "$name" "$result"
	done
	log "cri $rt $drv: $(grep -oE '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n1) (exit $rc, $((SECONDS - t0)) s)"
}
# crun and runc with cgroupfs: the build host's CRI runs (make engines).
for case in phantom/systemd crun/systemd runc/systemd phantom/cgroupfs; do
	wanted "cri/$case" && cri_case "${case%/*}" "${case#*/}" "${cri_all[@]}"
done

# ---- phantom's sandbox (its own command line): a scope in phantom.slice ----
# The sandbox mounts no cgroup filesystem: its scope is read from here.
if wanted sandbox; then
	t=$SECONDS
	phantom run --profile python-dev --no-daemon --memory 64MiB -- sleep 8 >"$logs/sandbox.out" 2>&1 &
	sb_pid=$!
	scope= mem=
	for _ in $(seq 150); do
		scope=$(ls -d /sys/fs/cgroup/phantom.slice/*.scope 2>/dev/null | head -n1)
		[[ -n $scope ]] && mem=$(cat "$scope/memory.max" 2>/dev/null) && break
		sleep 0.2
	done
	wait "$sb_pid"
	rc=$?
	log "sandbox: exit $rc, scope ${scope:-none}, memory.max ${mem:-none}, $((SECONDS - t)) s: $(head -c 300 "$logs/sandbox.out")"
	record sandbox/phantom/systemd memory "$([[ $rc == 0 && $mem == 67108864 ]] && echo pass || echo fail)"
	left=$(ls -d /sys/fs/cgroup/phantom.slice/*.scope 2>/dev/null)
	record sandbox/phantom/systemd scope-gone "$([[ -n $scope && -z $left ]] && echo pass || echo fail)"
	[[ -n $left ]] && log "sandbox: scopes left: $left"
fi

# ---- phantom's daemon: warm zygotes, each a scope in phantom.slice --------
# A pool of one python-dev zygote; a warm run with its own memory limit
# (applied to the zygote's scope when the request comes), then SIGTERM
# drains the daemon and every scope it made goes with it.
if wanted daemon; then
	t=$SECONDS
	dd=/run/phantom-vm-daemon
	mkdir -p "$dd"
	phantom --root "$dd/root" daemon --socket "$dd/daemon.sock" --pool python-dev=1 \
		--audit-log "$dd/audit.jsonl" >"$logs/daemon.log" 2>&1 &
	d_pid=$!
	ready=0
	for _ in $(seq 600); do
		if phantom daemon --status --socket "$dd/daemon.sock" 2>/dev/null | grep -q '"ready": *[1-9]'; then
			ready=1
			break
		fi
		kill -0 "$d_pid" 2>/dev/null || break
		sleep 0.2
	done
	record daemon/phantom/systemd pool-ready "$([[ $ready == 1 ]] && echo pass || echo fail)"
	phantom --debug run --daemon-socket "$dd/daemon.sock" --profile python-dev --memory 64MiB -- \
		sh -c 'sleep 4; echo warm-ok' >"$logs/daemon-run.out" 2>"$logs/daemon-run.err" &
	r_pid=$!
	mem=
	for _ in $(seq 150); do
		mem=$(grep -lx 67108864 /sys/fs/cgroup/phantom.slice/*.scope/memory.max 2>/dev/null | head -n1)
		[[ -n $mem ]] && break
		sleep 0.2
	done
	wait "$r_pid"
	rc=$?
	warm=0
	grep -q 'warm path' "$logs/daemon-run.err" && warm=1
	record daemon/phantom/systemd warm-run "$([[ $rc == 0 && $warm == 1 && $(cat "$logs/daemon-run.out") == warm-ok ]] && echo pass || echo fail)"
	record daemon/phantom/systemd memory "$([[ -n $mem ]] && echo pass || echo fail)"
	log "daemon: ready $ready, run exit $rc, warm $warm, scope with 64 MiB: ${mem:-none}; $(tail -c 300 "$logs/daemon-run.err")"
	kill -TERM "$d_pid" 2>/dev/null
	for _ in $(seq 150); do
		kill -0 "$d_pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -9 "$d_pid" 2>/dev/null && log "daemon: did not exit on SIGTERM"
	wait "$d_pid" 2>/dev/null
	left=$(ls -d /sys/fs/cgroup/phantom.slice/*.scope 2>/dev/null)
	zyg=$(ls "$dd/root" 2>/dev/null | grep '^zyg-')
	record daemon/phantom/systemd drained "$([[ -z $left && -z $zyg ]] && echo pass || echo fail)"
	[[ -n $left$zyg ]] && log "daemon: left after SIGTERM: $left $zyg"
	log "daemon: $((SECONDS - t)) s"
	rm -rf "$dd"
fi

log "done in $((SECONDS - started)) s"
touch "$share/done"
exec >/dev/console 2>&1
wait "$tee_pid" 2>/dev/null
sync
