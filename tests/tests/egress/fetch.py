# Downloads http://HOST/big (64 MiB) from ADDRESS and prints MB/s and the
# time to the first byte (ms): run through the proxy and directly.
import socket, sys, time
addr, host = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
s = socket.create_connection((addr, 80), timeout=10)
s.sendall(("GET /big HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
first, n = None, 0
while True:
    c = s.recv(1 << 20)
    if not c:
        break
    if first is None:
        first = time.monotonic()
    n += len(c)
t1 = time.monotonic()
print("%.1f %.2f %d" % (n / (t1 - t0) / 1e6, (first - t0) * 1e3, n))
