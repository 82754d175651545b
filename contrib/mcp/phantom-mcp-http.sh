#!/bin/sh
# Start phantom's MCP server over streamable HTTP on loopback, with a fresh
# API key if none exists yet. Clients send `Authorization: Bearer KEY` (or
# `X-API-Key: KEY`) to http://127.0.0.1:8808/mcp; see docs/mcp.md.
set -eu
keys=${PHANTOM_MCP_KEYS:-/etc/phantom/mcp-keys}
if [ ! -f "$keys" ]; then
    mkdir -p "$(dirname "$keys")"
    umask 077
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$keys"
    echo >> "$keys"
    echo "new API key in $keys" >&2
fi
chmod 600 "$keys"
exec phantom mcp --transport http --listen 127.0.0.1:8808 --api-keys "$keys" "$@"
