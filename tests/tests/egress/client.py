# Run inside the egress sandbox by tests/tests/egress.rs: tries each case
# and prints one JSON object of what happened.
import json, socket, ssl, sys

base = sys.argv[1]
out = {}

def dns(n):
    try:
        return socket.gethostbyname(n)
    except Exception:
        return "ERR"

def get(ip, port, host, tls=False, sni=None):
    try:
        s = socket.create_connection((ip, port), timeout=5)
        if tls:
            ctx = ssl.create_default_context(cafile="/workspace/cert.pem")
            ctx.check_hostname = False
            s = ctx.wrap_socket(s, server_hostname=sni or host)
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
        if b"\r\n\r\n" not in data:
            return "EMPTY"
        return data.split(b"\r\n\r\n", 1)[1].decode().strip()
    except Exception as e:
        return "ERR " + type(e).__name__

ok, no = base + ".10", base + ".11"
out["dns_allowed"] = dns("allowed.test")
out["dns_denied"] = dns("denied.test")
out["http_allowed"] = get(dns("allowed.test"), 80, "allowed.test")
out["https_allowed"] = get(dns("allowed.test"), 443, "allowed.test", tls=True)
out["http_denied"] = get(no, 80, "denied.test")
out["https_denied"] = get(no, 443, "denied.test", tls=True)
out["http_forged"] = get(no, 80, "allowed.test")
out["https_forged"] = get(no, 443, "allowed.test", tls=True)
out["raw_8080_allowed_port"] = get(ok, 8080, ok)
out["raw_8080_denied"] = get(no, 8080, no)
out["raw_ip_host"] = get(no, 80, no)
out["rebind_loop"] = get(ok, 80, "loop.test")
out["rebind_meta"] = get(ok, 80, "meta.test")
out["dns_meta"] = dns("meta.test")
print(json.dumps(out))
