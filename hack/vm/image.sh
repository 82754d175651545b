#!/usr/bin/env bash
# Build the VM test bed's image once: a Debian 12 root filesystem made by
# debootstrap (systemd as PID 1, podman, crun, runc, containerd), as a qcow2
# disk plus the distro kernel and initrd, cached under
# target/vm/<hash of the recipe files>/. A change to any recipe file (this
# script, guest.sh, the unit) gives a new hash and a new build; older
# builds are removed.
#
# Usage (as root): hack/vm/image.sh      prints the cache directory
#
# The mirror is read from the host's apt configuration at build time and
# never written to the repository or to the terminal: debootstrap's output
# goes to target/vm/build.log, and the guest's apt sources are emptied.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmdir=$repo/target/vm
size=${VM_IMAGE_SIZE:-3G}

if [[ $(id -u) -ne 0 ]]; then
	echo "$0: run as root (debootstrap, chroot)" >&2
	exit 1
fi

# guest.sh is not part of the recipe: the copy in the image only mounts the
# share and runs the guest.sh that came with this run's tarball, so a change
# to the tests needs no new image.
recipe=("$here/image.sh" "$here/phantom-vm-test.service")
hash=$(cat "${recipe[@]}" | sha256sum | cut -c1-16)
out=$vmdir/$hash
if [[ -f $out/ok ]]; then
	echo "$out"
	exit 0
fi

"$repo/hack/apt-ensure.sh" --quiet "$0" debootstrap qemu-utils e2fsprogs

# The first deb line of the host's apt config whose suites include bookworm
# (deb822 *.sources or one-line *.list), main component.
mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && uri != "") { print uri; found = 1; exit }
				types = suites = uri = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "types:" { $1 = ""; types = $0 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 }
			tolower($1) == "uris:" { uri = $2 }
			END { if (!found) flush() }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		awk '$1 == "deb" {
			i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1) == "bookworm") { print $i; exit }
		}' "$f"
	done
}
mirror=$(mirror | head -n1)
if [[ -z $mirror ]]; then
	echo "$0: no bookworm deb source in the host's apt configuration" >&2
	exit 1
fi

mkdir -p "$vmdir"
# Older builds go: one image at a time (each is a few hundred MB).
for d in "$vmdir"/*/; do
	d=${d%/}
	[[ $(basename "$d") =~ ^[0-9a-f]{16}$ && $d != "$out" ]] && rm -rf "$d"
done
mkdir -p "$out"
root=$out/root
log=$vmdir/build.log
: >"$log"

packages=(
	systemd systemd-sysv dbus udev kmod linux-image-amd64
	podman crun runc conmon catatonit containerd containernetworking-plugins
	busybox-static libseccomp2 iproute2 jq procps util-linux
)
include=$(
	IFS=,
	echo "${packages[*]}"
)

start=$(date +%s)
# debootstrap is the slow step (minutes): its result is kept as a tarball
# keyed by the package list, so a change to the rest of the recipe (or a
# build that failed later) starts from it.
base_key=$(echo "bookworm minbase ${packages[*]}" | sha256sum | cut -c1-16)
base_tar=$vmdir/debootstrap-$base_key.tar
for t in "$vmdir"/debootstrap-*.tar; do
	[[ -f $t && $t != "$base_tar" ]] && rm -f "$t"
done
rm -rf "$root"
if [[ ! -f $base_tar ]]; then
	echo "vm image: debootstrap bookworm (log: $log) ..." >&2
	# The mirror appears in debootstrap's messages: they stay in the log
	# only, with the host name replaced.
	if ! debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" 2>&1 |
		sed -E 's#[a-z]+://[^/ ]+#MIRROR#g' >>"$log"; then
		echo "$0: debootstrap failed; see $log" >&2
		exit 1
	fi
	if [[ ! -x $root/bin/systemctl ]]; then
		echo "$0: debootstrap did not install systemd; see $log" >&2
		exit 1
	fi
	# No trace of the mirror: debootstrap's own log, apt's sources, lists and logs.
	rm -f "$root/var/log/bootstrap.log" "$root"/etc/apt/sources.list.d/*
	: >"$root/etc/apt/sources.list"
	rm -rf "$root"/var/log/apt/* "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
	tar -C "$root" -cf "$base_tar.part" . && mv "$base_tar.part" "$base_tar"
	echo "vm image: debootstrap took $(($(date +%s) - start)) s" >&2
else
	mkdir -p "$root"
	tar -C "$root" -xf "$base_tar"
fi

# No network in the guest, and no trace of the mirror.
: >"$root/etc/apt/sources.list"
rm -f "$root"/etc/apt/sources.list.d/*

echo phantom-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 phantom-vm\n::1 localhost\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$root/etc/fstab"
# Root logs in on the serial console without a password (the VM has no network).
sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow"
mkdir -p "$root/mnt/share"
# The machine id is made at first boot (an overlay per run: every boot is the first).
: >"$root/etc/machine-id"

# Quiet, fast boot: nothing waits on a network, no timers, no getty but the console.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
	dpkg-db-backup.timer logrotate.timer man-db.timer containerd.service \
	podman-restart.service podman-auto-update.timer podman-clean-transient.service \
	systemd-networkd-wait-online.service; do
	chroot "$root" systemctl disable "$u" >>"$log" 2>&1 || true
done
chroot "$root" systemctl mask systemd-networkd-wait-online.service >>"$log" 2>&1 || true

# Podman: rootful, local storage only, no registry lookups.
mkdir -p "$root/etc/containers/registries.conf.d"
printf 'unqualified-search-registries = []\n' >"$root/etc/containers/registries.conf.d/00-none.conf"

# The test unit.
install -m 0755 "$here/guest.sh" "$root/usr/local/sbin/phantom-vm-guest"
install -m 0644 "$here/phantom-vm-test.service" "$root/etc/systemd/system/phantom-vm-test.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sfn /etc/systemd/system/phantom-vm-test.service \
	"$root/etc/systemd/system/multi-user.target.wants/phantom-vm-test.service"
chroot "$root" systemctl set-default multi-user.target >>"$log" 2>&1

# Kernel modules (9p, virtio) are found by modprobe.
kver=$(basename "$(ls -d "$root"/lib/modules/* | sort -V | tail -n1)")
chroot "$root" depmod "$kver"
# The 9p modules load early, so the share mounts without waiting on udev.
printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/9p.conf"

cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"

echo "vm image: mkfs.ext4 -d ($size) ..." >&2
mkfs.ext4 -q -F -L phantom-vm -d "$root" "$out/image.raw" "$size" >>"$log" 2>&1
qemu-img convert -O qcow2 "$out/image.raw" "$out/base.qcow2"
rm -f "$out/image.raw"
rm -rf "$root"
echo "$kver" >"$out/kernel-version"
touch "$out/ok"
echo "vm image: built in $(($(date +%s) - start)) s" >&2
echo "$out"
