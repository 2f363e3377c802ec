"""Trac 1.6 as a WSGI script for the peer servers (gunicorn, uWSGI, granian, mod_wsgi).

The Trac environment comes from BENCH_TRAC_ENV (set by bench/bench.py in the server's process
environment) unless the server already sets `trac.env_path` in the WSGI environ (Apache does,
with `SetEnv trac.env_path`, as a classic Trac deployment). Paddock does not use this file: it
runs trac.web.main:dispatch_request directly, with `trac.env_path` = the tenant directory."""

import os

import trac.web.main

ENV_PATH = os.environ.get("BENCH_TRAC_ENV", "")
if ENV_PATH:
    os.environ.setdefault("TRAC_ENV", ENV_PATH)


def application(environ, start_response):
    # Trac sends its pages through the write() callable that start_response must return (PEP
    # 3333). granian's start_response returns None; for it (and only when the server gives no
    # write()), written chunks are buffered and returned before the app's iterable.
    pending = []

    def start(status, headers, exc_info=None):
        write = start_response(status, headers, exc_info)
        return write if write is not None else pending.append

    result = trac.web.main.dispatch_request(environ, start)
    if not pending:
        return result
    try:
        pending.extend(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return pending
