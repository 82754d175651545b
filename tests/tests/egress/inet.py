# The test "internet" of tests/tests/egress.rs, run in its own network
# namespace: HTTP on 80 and 8080, HTTPS on 443 (one certificate for
# allowed.test and denied.test), and a DNS server on BASE.2:53 answering
# allowed.test, denied.test, loop.test (127.0.0.1), meta.test
# (169.254.169.254). Every HTTP answer says which address served it and
# which Host it was asked for.
import socket, ssl, struct, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

base, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("server=%s host=%s\n" % (self.connection.getsockname()[0],
                                        self.headers.get("Host"))).encode()
        if self.path.startswith("/big"):
            body = b"x" * (64 << 20)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

def serve(port, tls=False):
    s = ThreadingHTTPServer(("0.0.0.0", port), H)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
    threading.Thread(target=s.serve_forever, daemon=True).start()

for p in (80, 8080):
    serve(p)
serve(443, True)
names = {"allowed.test": base + ".10", "denied.test": base + ".11",
         "loop.test": "127.0.0.1", "meta.test": "169.254.169.254"}
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((base + ".2", 53))
print("ready", flush=True)
while True:
    q, addr = u.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    qend = i + 5
    ip = names.get(".".join(labels))
    an = 1 if (ip and qtype == 1) else 0
    flags = 0x8180 if ip else 0x8183
    resp = q[:2] + struct.pack(">HHHHH", flags, 1, an, 0, 0) + q[12:qend]
    if an:
        resp += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    u.sendto(resp, addr)
