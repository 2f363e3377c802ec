"""A misbehaving tenant's WSGI app for tests/tests/misbehaving_apps.rs: each route (PATH_INFO)
does one thing a buggy or hostile app might do to the router, through its log or its
responses. Every loop here is bounded.
"""
import os
import time


def _qs(environ):
    return dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)


def _write_err(data):
    """Write all of `data` to fd 2 (the router's stderr pipe), past Python's buffering."""
    view = memoryview(data)
    while view:
        n = os.write(2, view)
        view = view[n:]


def _ok(start_response, body):
    body = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def big_lines(mib):
    """Two lines of `mib` MiB each, written in 1 MiB pieces without a newline, then a marker."""
    piece = b"x" * (1 << 20)
    for _ in range(2):
        for _ in range(mib):
            _write_err(piece)
        _write_err(b"\n")
    _write_err(b"misbehave: after the big lines\n")


def application(environ, start_response):
    qs = _qs(environ)
    op = environ.get("PATH_INFO", "").strip("/")
    if op == "pid":
        return _ok(start_response, str(os.getpid()))
    if op == "log":
        _write_err(("misbehave: %s\n" % qs.get("msg", "")).encode())
        return _ok(start_response, str(os.getpid()))
    if op == "biglines":
        big_lines(int(qs.get("mib", "200")))
        return _ok(start_response, "done")
    if op == "badutf8":
        _write_err(b"misbehave: bad bytes \xff\xfe\xc3 here\n")
        for i in range(3):
            _write_err(("misbehave: line %d after the bad bytes\n" % i).encode())
        return _ok(start_response, str(os.getpid()))
    if op == "spam":
        n = int(qs.get("n", "20000"))
        for i in range(n):
            _write_err(("misbehave: spam %d\n" % i).encode())
        return _ok(start_response, "spammed %d" % n)
    if op == "status":
        # An interim or out-of-range status line, e.g. "101 Switching Protocols", "600 Nope".
        start_response(qs.get("line", "101 X").replace("+", " "), [("Content-Length", "2")])
        return [b"hi"]
    if op == "badcl":
        start_response("200 OK", [("Content-Length", qs.get("cl", "abc"))])
        return [b"hi"]
    if op == "shortcl":
        # A body shorter (or longer) than its Content-Length, all of it at once.
        start_response("200 OK", [("Content-Length", qs.get("cl", "10"))])
        return [b"hi"]
    if op == "shortbig":
        # A large announced body that stops short after its head has long been sent.
        start_response("200 OK", [("Content-Length", "1000000")])
        def chunks():
            for _ in range(4):
                time.sleep(0.2)
                yield b"x" * 50000
        return chunks()
    if op == "twocl":
        start_response("200 OK", [("Content-Length", "2"), ("Content-Length", "3")])
        return [b"hi"]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"no route\n"]
