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
    return trac.web.main.dispatch_request(environ, start_response)
