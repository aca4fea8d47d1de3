#!/usr/bin/env python3
"""srv_asyncio_server.py - the small asyncio HTTP/1.1 keep-alive server that
tests/extra/srv_asyncio.sh migrates while build/progs/srvload_http keeps its
connections open.

Each connection is one coroutine holding its own request counter: the body
of every answer is "path=PATH n=N h=H\\n" (N: requests answered on this
connection, H: FNV-1a 32 of PATH in hex), so a client notices a server that
lost the state of its connection as a wrong value.  Prints "ready HOST:PORT"
once listening.  usage: srv_asyncio_server.py HOST PORT
"""
import asyncio
import sys


def fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    answered = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            if len(parts) != 3 or parts[0] != b"GET":
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                break
            path = parts[1]
            answered += 1
            body = b"path=%s n=%d h=%08x\n" % (path, answered, fnv1a(path))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                         b"Connection: keep-alive\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    server = await asyncio.start_server(serve, host, port, backlog=128)
    print("ready %s:%d" % (host, port), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: srv_asyncio_server.py HOST PORT")
    asyncio.run(main())
