#!/usr/bin/env bash
# Install those of the named Debian packages that are not installed yet: a
# no-op when all are. It first tries without `apt-get update` (fast, and
# enough when the package lists are recent), then updates and tries again.
#
# Usage (as root): hack/apt-ensure.sh [--no-recommends] [--quiet] WHO PACKAGE...
# WHO starts each message. --quiet prints nothing unless it fails (for
# scripts whose output is read by others).
set -euo pipefail

usage="usage: $0 [--no-recommends] [--quiet] WHO PACKAGE..."
opts=(-y -qq)
quiet=0
while [[ ${1:-} == --* ]]; do
	case $1 in
	--no-recommends) opts+=(--no-install-recommends) ;;
	--quiet) quiet=1 ;;
	*)
		echo "$0: unknown option $1; $usage" >&2
		exit 2
		;;
	esac
	shift
done
if [[ $# -lt 2 ]]; then
	echo "$usage" >&2
	exit 2
fi
who=$1
shift

missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
	echo "$who: need root to install: ${missing[*]}" >&2
	exit 1
fi
((quiet)) || echo "$who: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if apt-get install "${opts[@]}" "${missing[@]}" >/dev/null 2>&1; then
	exit 0
fi
if ((quiet)); then
	apt-get update -qq >/dev/null 2>&1
	apt-get install "${opts[@]}" "${missing[@]}" >/dev/null
else
	apt-get update -qq
	apt-get install "${opts[@]}" "${missing[@]}"
fi
