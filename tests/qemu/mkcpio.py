#!/usr/bin/env python3
"""mkcpio.py OUT ENTRY... - write an initramfs (cpio "newc") without cpio(1).

ENTRY is one of:
  dir:/path               a directory (0755)
  file:/path=HOSTFILE     a regular file, mode taken from HOSTFILE
  chr:/path=MAJ,MIN       a character device (0600), e.g. chr:/dev/console=5,1
The kernel unpacks this format into its rootfs and runs /init.
"""
import os
import stat
import sys


def header(ino, mode, size, name, rmaj=0, rmin=0):
    name_b = name.encode() + b"\0"
    fields = [0x070701, ino, mode, 0, 0, 1, 0, size, 0, 0, rmaj, rmin, len(name_b), 0]
    h = b"070701" + b"".join(b"%08X" % f for f in fields[1:])
    out = h + name_b
    out += b"\0" * ((4 - len(out) % 4) % 4)
    return out


def main():
    out = open(sys.argv[1], "wb")
    ino = 1
    for ent in sys.argv[2:]:
        kind, rest = ent.split(":", 1)
        if kind == "dir":
            out.write(header(ino, stat.S_IFDIR | 0o755, 0, rest.lstrip("/")))
        elif kind == "file":
            path, host = rest.split("=", 1)
            data = open(host, "rb").read()
            mode = stat.S_IMODE(os.stat(host).st_mode)
            out.write(header(ino, stat.S_IFREG | mode, len(data), path.lstrip("/")))
            out.write(data)
            out.write(b"\0" * ((4 - len(data) % 4) % 4))
        elif kind == "chr":
            path, dev = rest.split("=", 1)
            maj, mnr = (int(x) for x in dev.split(","))
            out.write(header(ino, stat.S_IFCHR | 0o600, 0, path.lstrip("/"), maj, mnr))
        else:
            sys.exit("mkcpio: unknown entry kind %r" % kind)
        ino += 1
    out.write(header(ino, 0, 0, "TRAILER!!!"))
    out.close()


if __name__ == "__main__":
    main()
