#!/usr/bin/env bash
# The VM test bed (`make vm-test`): boot the systemd + pure cgroup v2 image
# of hack/vm/image.sh under qemu (TCG), run hack/vm/guest.sh inside it, and
# compare its results with hack/vm/expected.tsv. Prints one summary line
# `N passed, M failed, K skipped`; exits non-zero on a regression, on a
# timeout, or when no results came back.
#
# Usage (as root, after `make release` (or PHANTOM=binary) and the rst
# binaries, as `make vm-test` does): hack/vm/run.sh
#        hack/vm/run.sh --compare [RESULTS]   compare a results.tsv again
#        hack/vm/run.sh --draft   an expected.tsv from the last run's results
#
# Variables: VM_TIMEOUT (seconds, default 2400), VM_MEM (default 4G),
# VM_FILTER (a regular expression: only matching guest steps run; for
# development), VM_IMAGE_DIR (a ready image directory instead of
# hack/vm/image.sh's), CHECKER_TARGET (the rst-checker's triple, from the
# Makefile), CRI_TESTS (the CRI suite's test binary; make vm-test finds it).
set -euo pipefail
# One compound command, read whole before it runs: editing this file
# during a run does not change the running one.
{

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmdir=$repo/target/vm
run=$vmdir/run
share=$run/share
timeout=${VM_TIMEOUT:-2400}
checker_target=${CHECKER_TARGET:-x86_64-unknown-linux-gnu}

# compare RESULTS: with expected.tsv, `suite case expected [reason]`; a
# case without a row must pass. A different result is a regression, except
# a pass where fail/skip was expected (reported: update expected.tsv).
compare() {
	awk -F '\t' -v filter="${VM_FILTER:-}" '
		FNR == NR {
			if ($0 ~ /^#/ || NF < 3) next
			want[$1 "\t" $2] = $3; next
		}
		{
			key = $1 "\t" $2; got = $3; n[got]++
			w = (key in want) ? want[key] : "pass"
			seen[key] = 1
			if (got == w) next
			if (got == "pass") { printf "vm-test: unexpected pass: %s (expected %s): update hack/vm/expected.tsv\n", key, w; next }
			printf "vm-test: REGRESSION: %s: %s, expected %s\n", key, got, w
			bad++
		}
		END {
			if (filter == "") for (k in want) if (!(k in seen)) { printf "vm-test: missing result: %s\n", k; bad++ }
			printf "vm-test: %d regression(s)\n", bad
			printf "%d passed, %d failed, %d skipped\n", n["pass"], n["fail"], n["skip"]
			exit (bad > 0)
		}' "$here/expected.tsv" "$1"
}

# draft: an expected.tsv from the last run, every fail and skip with the
# reason rst gave (its expected.tsv's reason, or the skip's); other reasons
# are to be filled in by hand ("TODO").
draft() {
	local results=$vmdir/results.tsv logs=$share/logs
	printf '# suite\tcase\texpected\treason (hack/vm/run.sh --draft; a case without a row must pass)\n'
	awk -F '\t' -v logs="$logs" '
		function reason(suite, name,    f, line, r, rt, drv) {
			split(suite, part, "/")
			if (part[1] != "rst") return "TODO"
			f = logs "/rst-" part[2] "-" part[3] ".tap"
			while ((getline line < f) > 0) {
				if (line !~ /^(not )?ok [0-9]+ - /) continue
				sub(/^(not )?ok [0-9]+ - /, "", line)
				if (substr(line, 1, length(name) + 1) != name " ") continue
				r = line
				if (r ~ /# TODO expected fail \(/) { sub(/.*# TODO expected fail \(/, "", r); sub(/\): .*/, "", r) }
				else if (r ~ /# SKIP /) { sub(/.*# SKIP /, "", r); sub(/ \(unexpected:.*/, "", r) }
				else { sub(/^[^ ]* ?#? ?/, "", r) }
				close(f); return r
			}
			close(f); return "TODO"
		}
		$3 != "pass" { printf "%s\t%s\t%s\t%s\n", $1, $2, $3, reason($1, $2) }' "$results"
}

if [[ ${1:-} == --draft ]]; then
	draft
	exit
fi
if [[ ${1:-} == --compare ]]; then
	compare "${2:-$vmdir/results.tsv}"
	exit
fi

phantom=${PHANTOM:-$repo/target/release/phantom}
# phantom daemon and phantom mcp run the phantom-server beside phantom.
server=$(dirname "$phantom")/phantom-server
rst=$repo/target/debug/rst
checker=$repo/target/$checker_target/debug/rst-checker
# The CRI suite's test binary (integration-tests/tests/cri.rs), built for
# the host: the guest is the same Debian 12, with the same libc.
cri=${CRI_TESTS:-}
if [[ -z $cri ]]; then
	echo "$0: CRI_TESTS (the CRI suite's test binary) is not set: run \`make vm-test\`" >&2
	exit 2
fi
for f in "$phantom" "$server" "$rst" "$checker" "$cri"; do
	if [[ ! -x $f ]]; then
		echo "$0: $f is missing: run \`make vm-test\` (it builds phantom, rst and rst-checker)" >&2
		exit 2
	fi
done
if ! command -v qemu-system-x86_64 >/dev/null; then
	"$repo/hack/apt-ensure.sh" --no-recommends --quiet "$0" qemu-system-x86 qemu-utils
fi

t0=$(date +%s)
image=$(realpath "${VM_IMAGE_DIR:-$("$here/image.sh")}")
t1=$(date +%s)

qemu_pid=
cleanup() {
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		sleep 1
		kill -9 "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	rm -f "$run/overlay.qcow2"
	rm -rf "$run/pack"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One tarball into the share: 9p is slow per file, the guest unpacks it to
# its own disk.
rm -rf "$run"
mkdir -p "$share" "$run/pack/bin"
install -m 0755 "$phantom" "$server" "$rst" "$checker" "$run/pack/bin/"
# A debug build: its debug info would be most of the tarball.
strip --strip-debug -o "$run/pack/bin/cri-tests" "$cri"
chmod 0755 "$run/pack/bin/cri-tests"
install -m 0755 "$here/guest.sh" "$run/pack/guest.sh"
install -D -m 0755 "$repo/hack/make-rootfs.sh" "$run/pack/hack/make-rootfs.sh"
cp "$repo/runtime-spec-tests/expected.tsv" "$run/pack/rst-expected.tsv"
"$repo/hack/make-rootfs.sh" "$run/pack" >/dev/null
printf '%s\n' "${VM_FILTER:-}" >"$run/pack/filter"
tar -C "$run/pack" -cf "$share/bundle.tar" .
rm -rf "$run/pack"

qemu-img create -q -f qcow2 -b "$image/base.qcow2" -F qcow2 "$run/overlay.qcow2"
console=$vmdir/console.log
echo "vm-test: booting (TCG; console: $console) ..." >&2
qemu-system-x86_64 -accel tcg -smp 2 -m "${VM_MEM:-4G}" -nographic -no-reboot \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append 'root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all quiet' \
	-drive file="$run/overlay.qcow2",if=virtio \
	-virtfs local,path="$share",mount_tag=share,security_model=none,id=share \
	-nic none -serial file:"$console" -monitor none -display none </dev/null &
qemu_pid=$!

deadline=$((SECONDS + timeout))
while kill -0 "$qemu_pid" 2>/dev/null; do
	if ((SECONDS >= deadline)); then
		echo "vm-test: timeout after ${timeout} s; the console is in $console" >&2
		cleanup
		qemu_pid=
		break
	fi
	sleep 2
done
if [[ -n $qemu_pid ]]; then
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=
fi
t2=$(date +%s)

results=$share/results.tsv
if [[ ! -f $share/done || ! -s $results ]]; then
	echo "vm-test: no results came back (done marker: $([[ -f $share/done ]] && echo yes || echo no)); console: $console" >&2
	tail -n 30 "$console" >&2 || true
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi
cp "$results" "$vmdir/results.tsv"
[[ -f $share/guest.log ]] && cp "$share/guest.log" "$vmdir/guest.log"

set +e
compare "$results"
rc=$?
set -e
echo "vm-test: image $((t1 - t0)) s, boot and tests $((t2 - t1)) s (results: $vmdir/results.tsv, guest log: $vmdir/guest.log)" >&2
exit $rc
}
