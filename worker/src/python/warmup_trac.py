"""Zygote warm-up for Trac: serve one wiki page from a throwaway environment, so that what
Trac does lazily on its first request in a process (imports, entry-point resolution, the
compilation of its Jinja2 templates' code objects) is done once in the zygote and shared
copy-on-write by every forked worker. Only Trac's own (root-owned, checked) code runs; the
environment lives in a private temporary directory and is shut down and deleted afterwards, so
no worker inherits a database connection, a cached environment or a file of it."""
import io
import os
import shutil
import sys
import tempfile


def warm():
    from trac.env import Environment, env_cache, env_cache_lock
    from trac.web.main import dispatch_request

    tmp = tempfile.mkdtemp(prefix="paddock-zygote-warmup-")
    try:
        path = os.path.join(tmp, "env")
        env = Environment(path, create=True,
                          options=[("trac", "database", "sqlite:db/trac.db")])
        env.shutdown()
        for page in ("/wiki/WikiStart", "/timeline", "/wiki/WikiStart"):
            environ = {
                "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/warmup", "PATH_INFO": page,
                "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                "HTTP_HOST": "localhost", "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
                "wsgi.version": (1, 0), "wsgi.multithread": True,
                "wsgi.multiprocess": True, "wsgi.run_once": False,
                "trac.env_path": path,
            }
            status = []
            body = dispatch_request(environ, lambda s, h, e=None: status.append(s))
            try:
                for _ in body:
                    pass
            finally:
                if hasattr(body, "close"):
                    body.close()
        return status[0] if status else "no response"
    finally:
        with env_cache_lock:
            for cached in list(env_cache.values()):
                cached.shutdown()
            env_cache.clear()
        shutil.rmtree(tmp, ignore_errors=True)
