"""A real MCP client (the official Python SDK) driving `phantom mcp`.

Run by tests/mcp.rs:
  mcp_client.py stdio   PHANTOM ROOT          all tool checks over stdio, and the latency
  mcp_client.py http    URL KEY1 KEY2 PHANTOM ROOT   the same over HTTP, plus auth/Origin rules
  mcp_client.py transcript PHANTOM ROOT       prints a short session (for docs/mcp.md)
Exits non-zero on the first failed check. Prints `CHECK name` per check passed.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

EXPECTED_TOOLS = {
    "run_code", "run_command", "create_sandbox", "exec", "write_file", "read_file",
    "list_files", "destroy_sandbox", "list_sandboxes", "list_profiles",
}


def check(name, cond, detail=""):
    if not cond:
        print(f"FAILED {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"CHECK {name}", flush=True)


def text_of(res):
    return "".join(getattr(c, "text", "") for c in res.content)


def data_of(res):
    return json.loads(text_of(res))


async def call(s, name, args, **kw):
    return await s.call_tool(name, args, **kw)


def phantom_ids(phantom, root):
    out = subprocess.run([phantom, "--root", root, "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return [c["id"] for c in json.loads(out or "[]")]


async def wait_gone(phantom, root, pred, secs=15):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        left = [i for i in phantom_ids(phantom, root) if pred(i)]
        if not left:
            return []
        await asyncio.sleep(0.2)
    return left


async def tool_checks(s, phantom, root, tag):
    tools = await s.list_tools()
    names = {t.name for t in tools.tools}
    check(f"{tag} list_tools", EXPECTED_TOOLS <= names, names)
    rc = next(t for t in tools.tools if t.name == "run_code")
    check(f"{tag} run_code schema", "code" in rc.input_schema.get("properties", {}) and rc.description)

    # run_code: prints, writes stderr, exits non-zero
    r = await call(s, "run_code", {"language": "python", "code":
        "import sys\nprint('hello from phantom')\nprint('oops', file=sys.stderr)\nsys.exit(3)"})
    d = data_of(r)
    check(f"{tag} run_code non-zero exit", not r.is_error and d["exit_code"] == 3
          and d["stdout"] == "hello from phantom\n" and "oops" in d["stderr"]
          and d["timed_out"] is False and d["killed_for_memory"] is False, d)

    # files and stdin
    r = await call(s, "run_code", {"profile": "python-dev", "files": {"data/in.txt": "41"},
        "stdin": "1\n", "code": "import sys\nn=int(open('data/in.txt').read())+int(sys.stdin.read())\nprint(n)"})
    d = data_of(r)
    check(f"{tag} run_code files+stdin", d["stdout"] == "42\n" and d["exit_code"] == 0, d)

    # run_command
    r = await call(s, "run_command", {"profile": "python-dev", "command": ["sh", "-c", "echo $((6*7)); pwd"]})
    d = data_of(r)
    check(f"{tag} run_command", d["stdout"] == "42\n/workspace\n", d)

    # output cap
    r = await call(s, "run_code", {"language": "python", "code": "print('x' * 200000)"})
    d = data_of(r)
    check(f"{tag} output capped", d["stdout_truncated_bytes"] > 0 and "output truncated" in d["stdout"]
          and len(d["stdout"]) < 70000, {k: d[k] for k in ("stdout_truncated_bytes", "exit_code")})

    # timeout
    r = await call(s, "run_code", {"language": "python", "code": "import time\ntime.sleep(30)",
                                   "timeout_seconds": 1})
    d = data_of(r)
    check(f"{tag} timeout", d["timed_out"] is True and d["exit_code"] == 124 and d["duration_ms"] < 10000, d)

    # memory limit
    r = await call(s, "run_code", {"language": "python", "memory": "64MiB",
                                   "code": "b = bytearray(512 * 1024 * 1024)\nprint(len(b))"})
    d = data_of(r)
    check(f"{tag} memory limit", d["exit_code"] != 0 and d["stdout"] == "", d)
    print(f"INFO {tag} memory-limit run: exit_code={d['exit_code']} killed_for_memory={d['killed_for_memory']}")

    # persistent sandbox across calls
    r = await call(s, "create_sandbox", {"profile": "python-dev"})
    sid = data_of(r)["id"]
    check(f"{tag} create_sandbox", not r.is_error and sid.startswith("mcp-"), text_of(r))
    r = await call(s, "write_file", {"id": sid, "path": "src/app.py",
                                     "content": "open('out.txt','w').write('made in sandbox')\nprint('ran')\n"})
    check(f"{tag} write_file", not r.is_error, text_of(r))
    r = await call(s, "exec", {"id": sid, "command": ["python3", "src/app.py"]})
    d = data_of(r)
    check(f"{tag} exec", d["stdout"] == "ran\n" and d["exit_code"] == 0, d)
    r = await call(s, "read_file", {"id": sid, "path": "out.txt"})
    check(f"{tag} read_file round trip", not r.is_error and text_of(r) == "made in sandbox", text_of(r))
    r = await call(s, "exec", {"id": sid, "command": ["sh", "-c", "cat src/app.py | wc -l; exit 5"]})
    d = data_of(r)
    check(f"{tag} exec exit status", d["exit_code"] == 5 and d["stdout"].strip() == "2", d)
    r = await call(s, "list_files", {"id": sid})
    paths = {e["path"]: e["type"] for e in data_of(r)["entries"]}
    check(f"{tag} list_files", paths.get("src/app.py") == "file" and paths.get("out.txt") == "file"
          and paths.get("src") == "dir", paths)
    r = await call(s, "list_sandboxes", {})
    check(f"{tag} list_sandboxes", [x["id"] for x in data_of(r)["sandboxes"]] == [sid], text_of(r))

    # bad input: each a tool error, and the server keeps serving
    bad = [
        ("write_file", {"id": sid, "path": "../escape.txt", "content": "x"}, "`..`"),
        ("write_file", {"id": sid, "path": "/etc/evil", "content": "x"}, "absolute"),
        ("read_file", {"id": sid, "path": "a/../../etc/passwd"}, "`..`"),
        ("create_sandbox", {"profile": "no-such-profile"}, "unknown profile"),
        ("run_code", {"profile": "nope", "language": "python", "code": "1"}, "unknown profile"),
        ("exec", {"id": "mcp-doesnotexist", "command": ["true"]}, "no such sandbox"),
        ("read_file", {"id": "mcp-doesnotexist", "path": "x"}, "no such sandbox"),
        ("destroy_sandbox", {"id": "mcp-doesnotexist"}, "no such sandbox"),
        ("run_code", {"language": "python"}, "invalid arguments"),
        ("run_code", {"language": "python", "code": 5}, "invalid arguments"),
        ("run_code", {"language": "cobol", "code": "x"}, "unknown language"),
        ("exec", {"id": sid, "command": []}, "command"),
        ("run_code", {"language": "python", "code": "1", "timeout_seconds": -1}, "timeout_seconds"),
        ("run_code", {"language": "python", "code": "1", "network": "internet"}, "network"),
    ]
    for tool, args, want in bad:
        r = await call(s, tool, args)
        check(f"{tag} bad input {tool} {want}", r.is_error and want in text_of(r), text_of(r))
    # An unknown tool is a protocol error (JSON-RPC -32602), as the spec's
    # tools/call example shows, not a tool's own error result.
    try:
        r = await call(s, "no_such_tool", {})
        check(f"{tag} unknown tool is a JSON-RPC error", False, text_of(r))
    except MCPError as e:
        check(f"{tag} unknown tool is a JSON-RPC error",
              e.error.code == -32602 and "no_such_tool" in e.error.message, str(e.error))

    # symlinks planted by the sandbox are not followed
    r = await call(s, "exec", {"id": sid, "command": ["sh", "-c",
        "ln -s /etc/hostname link && ln -s / rootlink && mkdir -p d && ln -s /etc d/up"]})
    check(f"{tag} plant symlinks", data_of(r)["exit_code"] == 0, text_of(r))
    for tool, args in [
        ("read_file", {"id": sid, "path": "link"}),
        ("read_file", {"id": sid, "path": "rootlink/etc/passwd"}),
        ("read_file", {"id": sid, "path": "d/up/passwd"}),
        ("write_file", {"id": sid, "path": "rootlink/tmp/pwned", "content": "x"}),
        ("write_file", {"id": sid, "path": "link", "content": "x"}),
        ("list_files", {"id": sid, "path": "rootlink"}),
    ]:
        r = await call(s, tool, args)
        check(f"{tag} symlink refused {tool} {args['path']}", r.is_error and "symlink" in text_of(r), text_of(r))
    r = await call(s, "list_files", {"id": sid})
    types = {e["path"]: e["type"] for e in data_of(r)["entries"]}
    check(f"{tag} symlinks listed, not followed", types.get("rootlink") == "symlink"
          and not any(p.startswith("rootlink/") for p in types), types)

    r = await call(s, "run_code", {"language": "python", "code": "print(1)"})
    check(f"{tag} still serving after bad input", data_of(r)["stdout"] == "1\n", text_of(r))

    # resources: profiles
    res = await s.list_resources()
    uris = {str(x.uri) for x in res.resources}
    check(f"{tag} list_resources", "phantom://profiles/python-dev" in uris, uris)
    rr = await s.read_resource("phantom://profiles/python-dev")
    check(f"{tag} read_resource", "python" in rr.contents[0].text, rr)
    r = await call(s, "list_profiles", {})
    check(f"{tag} list_profiles", "python-dev" in {p["name"] for p in data_of(r)["profiles"]}, text_of(r))

    # progress notifications on a long run
    got = []

    async def on_progress(progress, total, message):
        got.append((progress, message))

    r = await call(s, "run_command", {"profile": "python-dev", "command": ["sleep", "3"]},
                   progress_callback=on_progress)
    check(f"{tag} progress notifications", data_of(r)["exit_code"] == 0 and len(got) >= 1, got)

    # cancellation kills the sandbox's process tree
    t0 = time.monotonic()
    with anyio.move_on_after(2):
        await call(s, "run_command", {"profile": "python-dev", "command": ["sleep", "100"],
                                      "timeout_seconds": 300})
    # Fresh sandboxes are named by phantom (sbx-...) or, with limits, mcp-run-...
    left = await wait_gone(phantom, root, lambda i: i.startswith(("mcp-run-", "sbx-")))
    check(f"{tag} cancellation kills the sandbox", not left and time.monotonic() - t0 < 15, left)
    ps = "?"
    for _ in range(100):
        ps = subprocess.run(["pgrep", "-f", "^sleep 100$"], capture_output=True, text=True).stdout.strip()
        if ps == "":
            break
        await anyio.sleep(0.1)
    check(f"{tag} no sleep 100 left", ps == "", ps)
    r = await call(s, "exec", {"id": sid, "command": ["echo", "alive"]})
    check(f"{tag} serving after cancellation", data_of(r)["stdout"] == "alive\n", text_of(r))

    # exec timeout does not kill the persistent sandbox
    r = await call(s, "exec", {"id": sid, "command": ["sleep", "30"], "timeout_seconds": 1})
    d = data_of(r)
    check(f"{tag} exec timeout", d["timed_out"] is True and d["exit_code"] == 124, d)
    r = await call(s, "exec", {"id": sid, "command": ["echo", "still here"]})
    check(f"{tag} sandbox survives exec timeout", data_of(r)["stdout"] == "still here\n", text_of(r))

    r = await call(s, "destroy_sandbox", {"id": sid})
    check(f"{tag} destroy_sandbox", not r.is_error, text_of(r))
    r = await call(s, "exec", {"id": sid, "command": ["true"]})
    check(f"{tag} destroyed sandbox is gone", r.is_error and "no such sandbox" in text_of(r), text_of(r))
    check(f"{tag} destroyed in phantom", sid not in phantom_ids(phantom, root))


async def isolation_checks(open_session, phantom, root, tag):
    """Two sessions cannot see each other's sandboxes; a session's sandboxes die with it."""
    async with open_session() as a:
        r = await call(a, "create_sandbox", {"profile": "python-dev"})
        aid = data_of(r)["id"]
        async with open_session() as b:
            r = await call(b, "list_sandboxes", {})
            check(f"{tag} other session's list is empty", data_of(r)["sandboxes"] == [], text_of(r))
            for tool, args in [
                ("exec", {"id": aid, "command": ["true"]}),
                ("read_file", {"id": aid, "path": "x"}),
                ("write_file", {"id": aid, "path": "x", "content": "x"}),
                ("list_files", {"id": aid}),
                ("destroy_sandbox", {"id": aid}),
            ]:
                r = await call(b, tool, args)
                check(f"{tag} other session {tool}", r.is_error and "no such sandbox" in text_of(r), text_of(r))
            r = await call(b, "create_sandbox", {"profile": "python-dev"})
            bid = data_of(r)["id"]
        # b has ended: its sandbox is destroyed; a's is untouched
        left = await wait_gone(phantom, root, lambda i: i == bid)
        check(f"{tag} ended session's sandbox destroyed", not left, left)
        r = await call(a, "exec", {"id": aid, "command": ["echo", "mine"]})
        check(f"{tag} first session unaffected", data_of(r)["stdout"] == "mine\n", text_of(r))
    left = await wait_gone(phantom, root, lambda i: i == aid)
    check(f"{tag} sandbox destroyed at session end", not left, left)


async def latency(s, n=21):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = await call(s, "run_code", {"language": "python", "code": "print(1)"})
        times.append((time.perf_counter() - t) * 1000)
        assert data_of(r)["stdout"] == "1\n"
    return statistics.median(times), min(times), max(times)


def stdio_params(phantom, root, extra=()):
    # The SDK passes only a few variables to the server: hand on where sandboxes go.
    env = {k: os.environ[k] for k in ("PHANTOM_SANDBOX_DIR", "PHANTOM_DAEMON_SOCKET") if k in os.environ}
    return StdioServerParameters(command=phantom, args=["mcp", "--transport", "stdio", "--root", root, *extra],
                                 env=env)


async def main_stdio(phantom, root):
    @asynccontextmanager
    async def open_session():
        async with stdio_client(stdio_params(phantom, root)) as (rd, wr):
            async with ClientSession(rd, wr) as s:
                init = await s.initialize()
                yield s

    async with stdio_client(stdio_params(phantom, root)) as (rd, wr):
        async with ClientSession(rd, wr) as s:
            init = await s.initialize()
            check("stdio initialize", init.server_info.name == "phantom", init)
            await tool_checks(s, phantom, root, "stdio")
            med, lo, hi = await latency(s)
            print(f"LATENCY run_code print(1) over stdio: median {med:.1f} ms (min {lo:.1f}, max {hi:.1f}, n=21)")
    await isolation_checks(open_session, phantom, root, "stdio")


def raw(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}


async def main_http(url, key1, key2, phantom, root):
    def session_with(key, header="authorization"):
        @asynccontextmanager
        async def open_session():
            h = {"Authorization": f"Bearer {key}"} if header == "authorization" else {"X-API-Key": key}
            async with httpx2.AsyncClient(headers=h, timeout=httpx2.Timeout(120)) as hc:
                async with streamable_http_client(url, http_client=hc) as (rd, wr, *_):
                    async with ClientSession(rd, wr) as s:
                        await s.initialize()
                        yield s
        return open_session

    # auth and Origin rules, with a raw client
    st, body, _ = raw(url, INIT, {})
    check("http no key -> 401", st == 401 and "API key" in body, (st, body))
    st, body, _ = raw(url, INIT, {"Authorization": "Bearer wrong-key-0123456789"})
    check("http wrong key -> 401", st == 401, (st, body))
    st, body, hdr = raw(url, INIT, {"X-API-Key": key1})
    check("http X-API-Key -> 200", st == 200, (st, body))
    st, body, _ = raw(url, INIT, {"Authorization": f"Bearer {key1}", "Origin": "http://evil.example"})
    check("http foreign Origin -> 403", st == 403 and "Origin" in body, (st, body))
    st, body, _ = raw(url, INIT, {"Authorization": f"Bearer {key1}", "Origin": "http://attacker.localhost.evil:80"})
    check("http rebinding-style Origin -> 403", st == 403, (st, body))
    st, body, _ = raw(url, INIT, {"Authorization": f"Bearer {key1}", "Origin": "http://localhost:3000"})
    check("http localhost Origin -> 200", st == 200, (st, body))
    big = dict(INIT)
    big["params"] = dict(INIT["params"], pad="x" * (2 * 1024 * 1024))
    st, body, _ = raw(url, big, {"Authorization": f"Bearer {key1}"})
    check("http body too large -> 413", st == 413, (st, body[:200]))

    # without a session only initialize is served: a call in 2026 style
    # (protocol version, client info and capabilities in its _meta, which
    # rmcp would serve statelessly, the sandbox dying with the request) is
    # refused and makes no sandbox, whichever version its _meta names
    before = phantom_ids(phantom, root)
    for version in ("2025-11-25", "2026-07-28"):
        meta = {"io.modelcontextprotocol/protocolVersion": version,
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {}}
        st, body, _ = raw(url, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                "params": {"name": "create_sandbox",
                                           "arguments": {"profile": "python-dev"}, "_meta": meta}},
                          {"Authorization": f"Bearer {key1}", "Mcp-Protocol-Version": version,
                           "Mcp-Method": "tools/call", "Mcp-Name": "create_sandbox"})
        check(f"http session-less tools/call ({version} _meta) -> 400",
              st == 400 and "Mcp-Session-Id" in body, (st, body))
    st, body, _ = raw(url, {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
                      {"Authorization": f"Bearer {key1}", "Mcp-Protocol-Version": "2025-06-18"})
    check("http session-less tools/list -> 400", st == 400, (st, body))
    check("http session-less calls made no sandbox", phantom_ids(phantom, root) == before,
          (before, phantom_ids(phantom, root)))

    # a session opened with key1 cannot be used with key2
    st, body, hdr = raw(url, INIT, {"Authorization": f"Bearer {key1}"})
    sid = {k.lower(): v for k, v in hdr.items()}.get("mcp-session-id")
    check("http session id issued", st == 200 and sid, hdr)
    st, body, _ = raw(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                      {"Authorization": f"Bearer {key2}", "Mcp-Session-Id": sid,
                       "Mcp-Protocol-Version": "2025-06-18"})
    check("http session bound to its key", st == 404, (st, body))

    async with session_with(key1)() as s:
        await tool_checks(s, phantom, root, "http")
    await isolation_checks(session_with(key1, "x-api-key"), phantom, root, "http")

    # sandboxes per key are limited (server runs with --max-sandboxes 2)
    async with session_with(key1)() as s1, session_with(key2)() as s2:
        ids = []
        for _ in range(2):
            r = await call(s1, "create_sandbox", {"profile": "python-dev"})
            check("http create within quota", not r.is_error, text_of(r))
            ids.append(data_of(r)["id"])
        r = await call(s1, "create_sandbox", {"profile": "python-dev"})
        check("http quota per key", r.is_error and "too many sandboxes" in text_of(r), text_of(r))
        r = await call(s1, "run_code", {"language": "python", "code": "print(1)"})
        check("http quota counts runs", r.is_error and "too many sandboxes" in text_of(r), text_of(r))
        r = await call(s2, "create_sandbox", {"profile": "python-dev"})
        check("http other key has its own quota", not r.is_error, text_of(r))
        await call(s1, "destroy_sandbox", {"id": ids[0]})
        r = await call(s1, "run_code", {"language": "python", "code": "print(1)"})
        check("http quota freed by destroy", not r.is_error and data_of(r)["stdout"] == "1\n", text_of(r))


async def transcript(phantom, root):
    async with stdio_client(stdio_params(phantom, root)) as (rd, wr):
        async with ClientSession(rd, wr) as s:
            init = await s.initialize()
            print(f"> initialize\n< server {init.server_info.name} {init.server_info.version}, protocol {init.protocol_version}")
            tools = await s.list_tools()
            print(f"> tools/list\n< {', '.join(t.name for t in tools.tools)}")
            steps = [
                ("run_code", {"language": "python", "code": "import sys\nprint('hello from phantom')\nsys.exit(3)"}),
                ("create_sandbox", {"profile": "python-dev"}),
            ]
            for name, args in steps:
                r = await call(s, name, args)
                print(f"> tools/call {name} {json.dumps(args)}\n< isError={r.is_error} {text_of(r)}")
            sid = data_of(r)["id"]
            for name, args in [
                ("write_file", {"id": sid, "path": "app.py", "content": "print(sum(range(10)))\n"}),
                ("exec", {"id": sid, "command": ["python3", "app.py"]}),
                ("read_file", {"id": sid, "path": "../etc/passwd"}),
                ("exec", {"id": sid, "command": ["ln", "-s", "/etc/passwd", "pw"]}),
                ("read_file", {"id": sid, "path": "pw"}),
                ("destroy_sandbox", {"id": sid}),
            ]:
                r = await call(s, name, args)
                print(f"> tools/call {name} {json.dumps(args)}\n< isError={r.is_error} {text_of(r)}")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "stdio":
        anyio.run(main_stdio, sys.argv[2], sys.argv[3])
    elif mode == "http":
        anyio.run(main_http, *sys.argv[2:7])
    elif mode == "transcript":
        anyio.run(transcript, sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
    print("ALL CHECKS PASSED")
