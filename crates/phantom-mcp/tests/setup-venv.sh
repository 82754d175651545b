#!/bin/sh
# Creates the Python virtualenv with the official MCP SDK that the
# integration tests use as their client. Idempotent: a venv that already
# imports `mcp` is left alone.
#   crates/phantom-mcp/tests/setup-venv.sh [VENV_DIR]
# Default VENV_DIR: $PHANTOM_MCP_VENV, else target/mcp-venv in the workspace.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${1:-${PHANTOM_MCP_VENV:-$root/target/mcp-venv}}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import mcp.client.session' 2>/dev/null; then
    echo "setup-venv: $venv is ready"
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup-venv: python3-venv is missing; installing it" >&2
    "$root/hack/apt-ensure.sh" --quiet setup-venv python3-venv
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=1.9'
"$venv/bin/python" -c 'import mcp.client.session'
echo "setup-venv: $venv is ready"
