"""WSGI test applications for Paddock's end-to-end tests.

Each one is wrapped in wsgiref.validate.validator, which raises on any PEP 3333 violation by
the server (the request then fails with a 500 and the test sees it).
"""
import gc
import hashlib
import json
import os
import socket
import sys
import time
from wsgiref.validate import validator


def _environ_json(environ):
    keep = {}
    for k, v in environ.items():
        if isinstance(v, str):
            keep[k] = v
        elif isinstance(v, (bool, int, tuple)):
            keep[k] = v
    return json.dumps(keep, sort_keys=True).encode("utf-8")


def _environ(environ, start_response):
    body = _environ_json(environ)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _echo(environ, start_response):
    """Stream the request body back, reading it in pieces; report its SHA-256 in a header
    computed while reading (so the test checks both directions)."""
    inp = environ["wsgi.input"]
    h = hashlib.sha256()
    chunks = []
    while True:
        b = inp.read(65536)
        if not b:
            break
        h.update(b)
        chunks.append(b)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Body-Sha256", h.hexdigest())])
    return chunks


def _stream(environ, start_response):
    """A large response produced piece by piece: ?mb=N megabytes of a known pattern."""
    qs = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    mb = int(qs.get("mb", "20"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    block = bytes(range(256)) * 4096  # 1 MiB

    def gen():
        for _ in range(mb):
            yield block
    return gen()


def _whoami(environ, start_response):
    body = json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                       "cwd": os.getcwd(), "home": os.environ.get("HOME"),
                       "umask": _umask(), "env": sorted(os.environ)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def _qs(environ):
    return dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)


def stuck_in_sleep(seconds):
    """A recognisable frame for the stack dump a request timeout produces."""
    time.sleep(seconds)


def _sleep(environ, start_response):
    """?s=SECONDS[&pidfile=PATH]: write this process's pid, then sleep."""
    qs = _qs(environ)
    if "pidfile" in qs:
        with open(qs["pidfile"], "w") as f:
            f.write(str(os.getpid()))
    stuck_in_sleep(float(qs.get("s", "1")))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def _pid(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def _osenv(environ, start_response):
    """The process environment (not the WSGI environ) and the pid."""
    body = json.dumps({"pid": os.getpid(), "env": dict(os.environ)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _probe(environ, start_response):
    """?read=PATH or ?connect=PATH or ?list=PATH: what this tenant may touch."""
    qs = _qs(environ)
    try:
        if "read" in qs:
            with open(qs["read"], "rb") as f:
                f.read(1)
        elif "connect" in qs:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(qs["connect"])
            s.close()
        elif "list" in qs:
            os.listdir(qs["list"])
        result = "allowed"
    except OSError as e:
        result = "denied: %s" % type(e).__name__
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [result.encode()]


def _bighead(environ, start_response):
    """?kb=N: a response header of N KiB (mod_wsgi's "oversized response headers" case)."""
    kb = int(_qs(environ).get("kb", "100"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Big", "x" * (kb * 1024))])
    return [b"big"]


def _orphan(environ, start_response):
    """Double fork + setsid: a detached grandchild (`sleep 300`, parent 1 once its parent
    exits) that must die with the worker's pool all the same. Answers both pids."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode())
                os.close(w)
                os.execv("/bin/sleep", ["sleep", "300"])
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    pid = int(os.read(r, 32) or b"0")
    os.close(r)
    body = json.dumps({"worker": os.getpid(), "orphan": pid}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _fail(environ, start_response):
    raise RuntimeError("deliberate failure for the test")


def _gcfrozen(environ, start_response):
    """How many objects gc.freeze() has moved to the permanent generation so far."""
    body = str(gc.get_freeze_count()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/gcfrozen"):
        return _gcfrozen(environ, start_response)
    if path.startswith("/echo"):
        return _echo(environ, start_response)
    if path.startswith("/stream"):
        return _stream(environ, start_response)
    if path.startswith("/whoami"):
        return _whoami(environ, start_response)
    if path.startswith("/sleep"):
        return _sleep(environ, start_response)
    if path.startswith("/pid"):
        return _pid(environ, start_response)
    if path.startswith("/osenv"):
        return _osenv(environ, start_response)
    if path.startswith("/probe"):
        return _probe(environ, start_response)
    if path.startswith("/bighead"):
        return _bighead(environ, start_response)
    if path.startswith("/orphan"):
        return _orphan(environ, start_response)
    if path.startswith("/fail"):
        return _fail(environ, start_response)
    return _environ(environ, start_response)


application = validator(app)
