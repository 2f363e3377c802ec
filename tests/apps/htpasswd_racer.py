"""Test helper for tenant_users.rs: run as the signup user, swap every new
`<sites>/.creating-*/htpasswd` for a symlink to CANARY the moment it is created
(inotify), for at most SECONDS. Usage: htpasswd_racer.py SITES CANARY SECONDS"""

import ctypes
import os
import select
import struct
import sys
import time

IN_CREATE = 0x100
libc = ctypes.CDLL(None, use_errno=True)


def main():
    sites, canary, seconds = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), float(sys.argv[3])
    ifd = libc.inotify_init1(os.O_NONBLOCK)
    top = libc.inotify_add_watch(ifd, sites, IN_CREATE)
    watched, pending = {}, set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        # A claim is root's until it is handed over: retry until it can be watched.
        for d in list(pending):
            w = libc.inotify_add_watch(ifd, d, IN_CREATE)
            if w >= 0:
                pending.discard(d)
                watched[w] = d
                try:
                    os.symlink(canary, d + b"/.swap")
                except OSError:
                    pass
            elif not os.path.isdir(d):
                pending.discard(d)
        ready, _, _ = select.select([ifd], [], [], 0.001 if pending else 0.2)
        if not ready:
            continue
        try:
            buf = os.read(ifd, 65536)
        except BlockingIOError:
            continue
        i = 0
        while i < len(buf):
            wd, _mask, _cookie, n = struct.unpack_from("iIII", buf, i)
            name = buf[i + 16:i + 16 + n].rstrip(b"\0")
            i += 16 + n
            if wd == top and name.startswith(b".creating-"):
                pending.add(os.path.join(sites, name))
            elif wd in watched and name == b"htpasswd":
                d = watched[wd]
                try:
                    os.rename(d + b"/.swap", d + b"/htpasswd")
                except OSError:
                    pass


if __name__ == "__main__":
    main()
