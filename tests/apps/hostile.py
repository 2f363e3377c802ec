"""A hostile tenant's WSGI app for the isolation suite (tests/tests/tenant_isolation.rs).

Every endpoint tries one thing a tenant must not be able to do to another tenant or to the
host and answers `allowed ...` or `denied: <error>`; the test asserts the answer. Nothing here
loops without a bound.
"""
import errno
import json
import os
import threading
import time


def _qs(environ):
    return dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)


def _try(fn):
    try:
        return "allowed %s" % (fn() or "")
    except OSError as e:
        return "denied: %s" % errno.errorcode.get(e.errno, str(e.errno))


def _read(path):
    with open(path, "rb") as f:
        return str(len(f.read(4096)))


def _write(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)


def _threads(n, hold):
    """Start up to `n` threads that sleep `hold` seconds; report how many started."""
    started = 0
    for _ in range(n):
        try:
            threading.Thread(target=time.sleep, args=(hold,), daemon=True).start()
            started += 1
        except RuntimeError:
            break
    return "%d" % started


def _status():
    """NoNewPrivs, CapEff and CapBnd of this process."""
    keep = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("NoNewPrivs", "CapEff", "CapBnd", "CapPrm", "Uid"):
                keep[k] = v.strip()
    return json.dumps(keep, sort_keys=True)


def _mkfile(name):
    """Create NAME in the tenant directory with the worker's default umask; its mode."""
    with open(name, "w") as f:
        f.write("private data of %s\n" % os.getcwd())
    return oct(os.stat(name).st_mode & 0o777)


def application(environ, start_response):
    qs = _qs(environ)
    op = environ.get("PATH_INFO", "").strip("/")
    arg = qs.get("arg", "")
    if op == "pid":
        body = str(os.getpid())
    elif op == "read":
        body = _try(lambda: _read(arg))
    elif op == "write":
        body = _try(lambda: _write(arg))
    elif op == "list":
        body = _try(lambda: str(len(os.listdir(arg))))
    elif op == "kill":
        body = _try(lambda: os.kill(int(arg), int(qs.get("sig", "0"))))
    elif op == "chmod":
        body = _try(lambda: os.chmod(arg, 0o777))
    elif op == "unlink":
        body = _try(lambda: os.unlink(arg))
    elif op == "setuid":
        body = _try(lambda: os.setuid(0))
    elif op == "threads":
        body = _threads(int(arg or "10"), float(qs.get("hold", "2")))
    elif op == "status":
        body = _status()
    elif op == "mkfile":
        body = _mkfile(arg)
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"unknown op\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
