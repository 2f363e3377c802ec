"""Zygote warm-up for Trac: serve one wiki page from a throwaway environment, so that what
Trac does lazily on its first request in a process (imports, entry-point resolution, the
compilation of its Jinja2 templates' code objects) is done once in the zygote and shared
copy-on-write by every forked worker. Only Trac's own (root-owned, checked) code runs; the
environment lives in a private temporary directory and is shut down and deleted afterwards, so
no worker inherits a database connection, a cached environment or a file of it.

It also gives Trac's Jinja2 environments a bytecode cache held in the zygote's memory
(`TracTemplateCache`), filled with the code of Trac's own templates: a forked worker then loads
each of them with `marshal` instead of parsing and compiling it again for every Trac
environment it opens (about two thirds of a new environment's first request). Only templates
read from Trac's own package directory are cached; every load compares a checksum of the
source the worker has just read, so a changed file is compiled anew. Nothing a tenant supplies
enters the cache the workers inherit, and what a worker adds stays in its own process."""
import hashlib
import io
import os
import shutil
import sys
import tempfile

# Template suffixes Trac renders; the others under its templates directories are not templates.
TEMPLATE_SUFFIXES = (".html", ".xml", ".rss", ".txt")


def _settings_of(environment, name):
    """What the code Jinja2 generates for `name` depends on besides its source: the lexer's
    delimiters, whitespace handling, extensions, optimisation, async mode, autoescape as
    decided for this name (an overlay may turn it off) and whether a finalize function is
    set. Two environments that agree on these compile a template to the same code."""
    autoescape = environment.autoescape
    if callable(autoescape):
        autoescape = autoescape(name)
    finalize = environment.finalize
    return repr((
        type(environment).__module__, type(environment).__qualname__,
        environment.code_generator_class.__qualname__,
        environment.block_start_string, environment.block_end_string,
        environment.variable_start_string, environment.variable_end_string,
        environment.comment_start_string, environment.comment_end_string,
        environment.line_statement_prefix, environment.line_comment_prefix,
        environment.trim_blocks, environment.lstrip_blocks,
        environment.newline_sequence, environment.keep_trailing_newline,
        tuple(sorted(environment.extensions)), environment.optimized,
        environment.is_async, bool(autoescape),
        None if finalize is None else getattr(finalize, "__qualname__", repr(type(finalize))),
    ))


def template_cache_class():
    import jinja2
    from jinja2.bccache import Bucket

    class TracTemplateCache(jinja2.BytecodeCache):
        """In-memory bytecode cache for the templates under `root` (Trac's package)."""

        def __init__(self, root):
            self.root = os.path.join(os.path.realpath(root), "")
            self.store = {}

        def key_of(self, environment, name, filename):
            if not filename or not name.endswith(TEMPLATE_SUFFIXES):
                return None
            if not os.path.realpath(filename).startswith(self.root):
                return None
            text = "\0".join((name, filename, _settings_of(environment, name)))
            return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

        def get_bucket(self, environment, name, filename, source):
            key = self.key_of(environment, name, filename)
            bucket = Bucket(environment, key or "", self.get_source_checksum(source))
            if key:
                self.load_bytecode(bucket)
            return bucket

        def set_bucket(self, bucket):
            if bucket.key:
                self.dump_bytecode(bucket)

        def load_bytecode(self, bucket):
            data = self.store.get(bucket.key)
            if data is not None:
                # Checks Jinja2's and Python's magic and the source's checksum; on a
                # mismatch the bucket stays empty and the template is compiled.
                bucket.bytecode_from_string(data)

        def dump_bytecode(self, bucket):
            self.store[bucket.key] = bucket.bytecode_to_string()

    return TracTemplateCache


def install_template_cache():
    """Makes every Jinja2 environment Trac creates from here on (trac.util.text.jinja2env,
    also under the names other Trac modules imported it as) use one TracTemplateCache."""
    import trac
    import trac.util.text as text

    cache = template_cache_class()(os.path.dirname(trac.__file__))
    original = text.jinja2env

    def jinja2env(**kwargs):
        kwargs.setdefault("bytecode_cache", cache)
        return original(**kwargs)

    jinja2env.__doc__ = original.__doc__
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("trac") and \
                getattr(module, "jinja2env", None) is original:
            module.jinja2env = jinja2env
    return cache


PAGES = ("/wiki/WikiStart", "/timeline", "/wiki/WikiStart")


class Warmup:
    """The warm-up in small steps (`step()` does one and says whether any is left), so that
    the zygote can fork a worker between two of them: a spawn request never waits for the
    rest of the warm-up. Before a fork the zygote calls `pause()`, which shuts the
    environment down and empties Trac's environment cache, so no worker inherits a database
    connection or a cached environment; the next step opens it again. `finish()` deletes
    the environment's directory and says what was done."""

    def __init__(self):
        self.cache = install_template_cache()
        self.tmp = tempfile.mkdtemp(prefix="paddock-zygote-warmup-")
        self.path = os.path.join(self.tmp, "env")
        self.pages = list(PAGES)
        self.templates = None  # listed once the pages have been served
        self.status = "no response"
        self.compiled = 0

    def _env(self):
        from trac.env import open_environment

        return open_environment(self.path, use_cache=True)

    def step(self):
        if not os.path.exists(self.path):
            from trac.env import Environment

            Environment(self.path, create=True,
                        options=[("trac", "database", "sqlite:db/trac.db")]).shutdown()
        elif self.pages:
            self._serve(self.pages.pop(0))
        elif self.templates is None:
            from trac.web.chrome import Chrome

            names = Chrome(self._env()).jenv.list_templates()
            self.templates = [n for n in names if n.endswith(TEMPLATE_SUFFIXES)]
        elif self.templates:
            from trac.web.chrome import Chrome

            name = self.templates.pop(0)
            try:
                Chrome(self._env()).load_template(name, text=name.endswith(".txt"))
                self.compiled += 1
            except Exception:
                pass  # a template that does not compile alone (none in Trac 1.6) is skipped
        return bool(self.pages) or self.templates is None or bool(self.templates)

    def _serve(self, page):
        from trac.web.main import dispatch_request

        environ = {
            "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/warmup", "PATH_INFO": page,
            "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "localhost", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
            "trac.env_path": self.path,
        }
        status = []

        def start_response(s, headers, exc_info=None):
            status.append(s)
            return lambda data: None  # PEP 3333's write(); Trac writes its pages with it

        body = dispatch_request(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            if hasattr(body, "close"):
                body.close()
        self.status = status[-1] if status else "no response"

    def pause(self):
        from trac.env import env_cache, env_cache_lock

        with env_cache_lock:
            for cached in list(env_cache.values()):
                cached.shutdown()
            env_cache.clear()

    def finish(self):
        self.pause()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return f"{self.status}; {self.compiled} templates, {len(self.cache.store)} cached"

