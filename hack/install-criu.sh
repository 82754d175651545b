#!/usr/bin/env bash
# Install a CRIU that works on this kernel, for `phantom checkpoint/restore`.
#
# Debian 12's criu 3.17.1 fails at start on kernel 6.18 ("vdso: Unexpected rt
# vDSO area bounds"). Debian 13 (trixie) ships criu 4.x, which works. Rather
# than mixing trixie packages into the system (its libc is newer), this
# script downloads trixie's `criu` and the libraries it needs with
# `apt-get download` from a private apt directory (its own sources.list,
# lists and cache under $APT_DIR), unpacks them with `dpkg -x` into $PREFIX
# and writes $PREFIX/bin/criu, a wrapper that runs the prefix's own dynamic
# loader with --library-path on the prefix's libraries. Nothing in /usr or
# /etc changes.
#
# Does nothing when `criu` on PATH (or $PREFIX/bin/criu) is >= 4.0 and
# `criu check` passes. Idempotent. Usage (as root): hack/install-criu.sh
set -euo pipefail

PREFIX=${PHANTOM_CRIU_PREFIX:-/opt/phantom-criu}
APT_DIR=${PHANTOM_CRIU_APT:-/var/lib/phantom-criu/apt}
SUITE=trixie

# criu_ok BIN: true when BIN reports version >= 4.0 and `criu check` passes.
criu_ok() {
	local bin=$1 v
	[[ -x $bin ]] || command -v "$bin" >/dev/null 2>&1 || return 1
	v=$("$bin" --version 2>/dev/null | sed -n 's/^Version: *\([0-9]*\)\..*/\1/p')
	[[ -n $v && $v -ge 4 ]] || return 1
	"$bin" check >/dev/null 2>&1
}

if criu_ok criu || criu_ok "$PREFIX/bin/criu"; then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "install-criu: need root to install CRIU into $PREFIX" >&2
	exit 1
fi

# The mirror the system already uses (deb822 URIs: or a one-line deb entry).
mirror=$(grep -rhoE '^URIs: *\S+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null |
	awk '{print $2}' | head -n1 || true)
if [[ -z $mirror ]]; then
	mirror=$(grep -rhoE '^deb +\S+/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '{print $2}' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-trixie-stable.gpg
[[ -f $keyring ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

mkdir -p "$APT_DIR"/{lists/partial,cache/archives/partial,debs,etc/preferences.d,etc/apt.conf.d}
cat >"$APT_DIR/etc/sources.list" <<SRC
deb [signed-by=$keyring] $mirror $SUITE main
SRC
apt_opts=(
	-o "Dir::Etc::SourceList=$APT_DIR/etc/sources.list"
	-o "Dir::Etc::SourceParts=-"
	-o "Dir::Etc::Preferences=$APT_DIR/etc/preferences"
	-o "Dir::Etc::PreferencesParts=$APT_DIR/etc/preferences.d"
	-o "Dir::State=$APT_DIR"
	-o "Dir::State::Lists=$APT_DIR/lists"
	-o "Dir::State::status=$APT_DIR/status"
	-o "Dir::Cache=$APT_DIR/cache"
	-o "APT::Architecture=amd64"
	-o "APT::Architectures::=amd64"
	-o "Debug::NoLocking=1"
	# The download dir is root's; _apt cannot write it.
	-o "APT::Sandbox::User=root"
)
# An empty dpkg status: every dependency counts as missing, so the
# recursive walk below names all of them (the prefix has nothing else).
: >"$APT_DIR/status"

echo "install-criu: fetching $SUITE package lists from $mirror"
apt-get "${apt_opts[@]}" -qq update

# criu plus every library package it needs, recursively (Depends and
# PreDepends only). Non-library packages (base-files, perl, ...) are not
# needed to run the binary and are skipped.
mapfile -t pkgs < <(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends \
	--no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances criu |
	grep -E '^[a-z0-9]' | grep -vE '^<' | sort -u |
	grep -E '^(criu|lib[a-z0-9.+-]*)$' | grep -vE '^lib.*-(dev|bin|doc)$|^libpython|^libperl|^libgcc-s1$' || true)
pkgs+=(libgcc-s1)
echo "install-criu: downloading ${#pkgs[@]} packages: ${pkgs[*]}"
(cd "$APT_DIR/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" -qq download "${pkgs[@]}")

rm -rf "$PREFIX.new"
mkdir -p "$PREFIX.new/bin"
for deb in "$APT_DIR"/debs/*.deb; do
	dpkg -x "$deb" "$PREFIX.new"
done
loader=$PREFIX/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
[[ -e $PREFIX.new/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 ]] || {
	echo "install-criu: no ld-linux-x86-64.so.2 in the unpacked libc6" >&2
	exit 1
}
libs=$PREFIX/usr/lib/x86_64-linux-gnu:$PREFIX/lib/x86_64-linux-gnu
cat >"$PREFIX.new/bin/criu" <<WRAP
#!/bin/sh
# Written by phantom's hack/install-criu.sh: trixie's criu with its own
# libc and libraries from $PREFIX (the system's are too old for it).
exec $loader --library-path $libs $PREFIX/usr/sbin/criu "\$@"
WRAP
chmod 755 "$PREFIX.new/bin/criu"
rm -rf "$PREFIX.old"
[[ -e $PREFIX ]] && mv "$PREFIX" "$PREFIX.old"
mv "$PREFIX.new" "$PREFIX"
rm -rf "$PREFIX.old"

"$PREFIX/bin/criu" --version
if ! out=$("$PREFIX/bin/criu" check 2>&1); then
	echo "install-criu: $PREFIX/bin/criu check failed:" >&2
	echo "$out" >&2
	exit 1
fi
echo "install-criu: $PREFIX/bin/criu check: $out"
