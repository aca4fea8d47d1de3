#!/usr/bin/env python3
"""ka_client.py - one keep-alive HTTP/1.1 connection across a checkpoint:
the test's client for ctr_migrate_netns.sh's --tcp-established case.

usage: ka_client.py ADDR PORT GO_FILE
Sends GET /a on one connection and prints "first ok n=1"; waits for GO_FILE
to exist (the test makes it once the server is checkpointed: the request
then meets the network lock, or without one a socket-less namespace's RST),
sends GET /b on the same connection and prints "second ok n=2" once its
answer came (within 60 s), else "second failed: ERROR".  A request counter
kept per connection by the server (ctr_httpd) makes n=2 the proof that the
same connection, with its state, answered.
"""
import os
import re
import socket
import sys
import time


def answer(s, deadline):
    """The body of one response on @s: 'path=... n=N h=...'."""
    buf = b""
    while time.time() < deadline:
        s.settimeout(max(0.1, deadline - time.time()))
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
        m = re.search(rb"Content-Length: (\d+)\r\n.*?\r\n\r\n", buf, re.S)
        if m and len(buf) >= m.end() + int(m.group(1)):
            return buf[m.end():m.end() + int(m.group(1))].decode()
    raise TimeoutError("no answer")


def main():
    addr, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection((addr, port), timeout=10)
    s.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
    body = answer(s, time.time() + 10)
    print("first ok" if " n=1 " in body else "first bad: " + body.strip(), flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    try:
        s.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        print("sent during the gap", flush=True)
        body = answer(s, time.time() + 60)
        print("second ok n=2" if " n=2 " in body else "second bad: " + body.strip(), flush=True)
    except OSError as e:
        print("second failed: %s" % e, flush=True)


if __name__ == "__main__":
    main()
