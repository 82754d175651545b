#!/usr/bin/env bash
# Checkpoint and restore of a busybox container (issue 19): wall time of
# `checkpoint` and of `restore -d`, and the image size, for each runtime
# given (default: target/debug/phantom and runc), N rounds each, medians
# printed. Needs root and a working CRIU (hack/install-criu.sh).
# Workloads (-w): `sleep` (busybox sleep), `mem100` (dd holding a 100 MiB
# buffer of random bytes, blocked writing into a pipe nobody reads).
#
# Usage: benches/checkpoint.sh [-n N] [-w sleep|mem100] [RUNTIME...]
set -euo pipefail
cd "$(dirname "$0")/.."
n=10
workload=sleep
while [[ ${1:-} == -* ]]; do
	case $1 in
	-n) n=$2 ;;
	-w) workload=$2 ;;
	*) echo "usage: $0 [-n N] [-w sleep|mem100] [RUNTIME...]" >&2; exit 2 ;;
	esac
	shift 2
done
case $workload in
sleep) args='["sleep","100000"]' ;;
mem100) args='["sh","-c","dd if=/dev/urandom bs=100M count=1 2>/dev/null | sleep 100000"]' ;;
*) echo "$0: unknown workload $workload" >&2; exit 2 ;;
esac
runtimes=("$@")
((${#runtimes[@]})) || runtimes=("$PWD/target/debug/phantom" /usr/sbin/runc)
export PATH=/opt/phantom-criu/bin:$PATH
bash hack/make-rootfs.sh target/test-rootfs >/dev/null
work=$(mktemp -d /tmp/phantom-ckbench.XXXXXX)
trap 'for r in "${runtimes[@]}"; do "$r" --root "$work/root" delete -f ckbench >/dev/null 2>&1 || true; done; rm -rf "$work"; rmdir /sys/fs/cgroup/*/phantom-bench/ckbench /sys/fs/cgroup/*/phantom-bench 2>/dev/null || true' EXIT
mkdir -p "$work/bundle" "$work/root"
cp -a target/test-rootfs/rootfs "$work/bundle/rootfs"
cat >"$work/bundle/config.json" <<JSON
{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},
 "args":$args,"env":["PATH=/bin:/usr/bin"],"cwd":"/",
 "capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}},
 "root":{"path":"rootfs"},"hostname":"ck",
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
  {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","mode=755"]}],
 "linux":{"cgroupsPath":"/phantom-bench/ckbench","namespaces":[{"type":"pid"},{"type":"network"},
  {"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}
JSON
ms() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "workload: $workload, $n rounds, medians"
printf '%-28s %14s %14s %10s\n' runtime "checkpoint ms" "restore ms" "image KiB"
for r in "${runtimes[@]}"; do
	ck=() rs=() sz=()
	(cd "$work/bundle" && "$r" --root "$work/root" run -d ckbench </dev/null >/dev/null 2>&1)
	sleep 1 # let the workload set itself up
	for ((i = 0; i < n; i++)); do
		rm -rf "$work/img"
		t0=$(ms)
		"$r" --root "$work/root" checkpoint --image-path "$work/img" ckbench
		t1=$(ms)
		(cd "$work/bundle" && "$r" --root "$work/root" restore -d --image-path "$work/img" ckbench </dev/null >/dev/null 2>&1)
		t2=$(ms)
		ck+=($(((t1 - t0) / 1000))) rs+=($(((t2 - t1) / 1000)))
		sz+=("$(du -sk --exclude='*.log' "$work/img" | cut -f1)")
	done
	"$r" --root "$work/root" delete -f ckbench >/dev/null 2>&1
	printf '%-28s %14.1f %14.1f %10s\n' "$(basename "$r")" \
		"$(printf '%s\n' "${ck[@]}" | median | awk '{print $1/1000}')" \
		"$(printf '%s\n' "${rs[@]}" | median | awk '{print $1/1000}')" \
		"$(printf '%s\n' "${sz[@]}" | median)"
done
