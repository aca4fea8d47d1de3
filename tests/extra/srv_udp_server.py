#!/usr/bin/env python3
"""srv_udp_server.py - the UDP echo server that tests/extra/srv_udp.sh
migrates while build/progs/srvload_udp sends to it: every datagram goes back
to its sender unchanged.  One bound, unconnected socket, blocking recvfrom:
a datagram queued at the freeze is answered after the resume if the
socket's receive queue moved with it (the client counts it "late").
Prints "ready HOST:PORT" once bound.  usage: srv_udp_server.py HOST PORT
"""
import socket
import sys


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: srv_udp_server.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready %s:%d" % (host, port), flush=True)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


if __name__ == "__main__":
    main()
