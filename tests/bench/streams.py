#!/usr/bin/env python3
"""streams.py PORT TOKEN COUNT READY_FILE — holds COUNT agent consoles open
against the Agent API: each a real HTTP connection to GET /v1/stream with
the bearer header, read as it arrives (as the page's fetch() reads it).
Writes "ready N" to READY_FILE once every stream answered 200, then reads
until SIGTERM; exits 1 if a stream is refused or closed by the gateway."""
import selectors
import signal
import socket
import sys


def main():
    port, token, count, ready_file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    request = ("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n" % token).encode()
    sel = selectors.DefaultSelector()
    heads = {}
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        heads[s] = b""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ready = 0
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                print("streams: the gateway closed a stream", file=sys.stderr)
                return 1
            if s in heads:
                heads[s] += data
                if b"\r\n\r\n" in heads[s]:
                    if not heads[s].startswith(b"HTTP/1.1 200"):
                        print("streams: refused: %r" % heads[s][:200], file=sys.stderr)
                        return 1
                    del heads[s]
                    ready += 1
                    if ready == count:
                        with open(ready_file, "w") as f:
                            f.write("ready %d\n" % ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
