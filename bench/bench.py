#!/usr/bin/python3.11
"""Side-by-side benchmarks of Paddock and its peers (Apache + mod_wsgi daemon mode, gunicorn,
uWSGI, granian) on loopback. Run through bench/run.sh, which installs what this needs first.
Standard library only. See docs/benchmarks.md for what each figure means.

Every server is started in its own session (process group), on a free 127.0.0.1 port, and is
stopped by its PID/PGID only; every wait is bounded in time."""

import argparse
import datetime
import html.parser
import http.client
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
APPS = os.path.join(BENCH, "apps")
LUA = os.path.join(BENCH, "lua", "report.lua")
SCRATCH = os.environ.get("PADDOCK_BENCH_DIR", os.path.join(REPO, "target", "bench"))
VENV = os.path.join(SCRATCH, "venv")
TRAC_HTDOCS = os.path.join(VENV, "lib", "python3.11", "site-packages", "trac", "htdocs")
# The release build by default; the smoke mode uses the debug build scripts/test.sh has made
# already (run.sh sets PADDOCK_BENCH_PROFILE), since it measures nothing.
PROFILE = os.environ.get("PADDOCK_BENCH_PROFILE", "release")
PADDOCK = os.path.join(REPO, "target", PROFILE, "paddock")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
BEGIN = "<!-- BEGIN GENERATED RESULTS (bench/run.sh writes this section; edits are lost) -->"
END = "<!-- END GENERATED RESULTS -->"
BENCH_USER = "paddock-bench"
SERVERS = ["paddock", "apache", "gunicorn", "uwsgi", "granian"]
SECTIONS = ["throughput", "coldstart", "memory"]
# Each request is logged once at info by paddock::access; the peers run without access logs
# (Apache: no CustomLog, uWSGI: --disable-logging, gunicorn and granian: off by default).
PADDOCK_LOG = "info,paddock::access=warn"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and memory


def ppid_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid):
    """pid and all its descendants (bounded: a process table is finite)."""
    kids = ppid_map()
    out, todo = [], [pid]
    while todo and len(out) < 100000:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_kib(pid, path, key):
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0



def is_zygote(pid, router_pid):
    """A `paddock-worker zygote` started by the router (its forked workers are its children
    and show the same command line)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return ppid == router_pid and len(argv) > 1 and argv[1] == b"zygote"

def memory(pids):
    """(RSS MiB, PSS MiB) summed over pids."""
    rss = sum(proc_kib(p, "status", "VmRSS") for p in pids)
    pss = sum(proc_kib(p, "smaps_rollup", "Pss") for p in pids)
    return rss / 1024, pss / 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Identity:
    """As root, servers that do not switch users themselves (gunicorn, uWSGI, granian) run as
    the system user paddock-bench, which owns the tenant and Trac directories; Apache and
    Paddock start as root and switch themselves (User/WSGIDaemonProcess, owner of the tenant
    directory), as they would in production. As another user, everything runs as that user."""

    def __init__(self):
        self.root = os.geteuid() == 0
        if self.root:
            try:
                pwd.getpwnam(BENCH_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                "/usr/sbin/nologin", BENCH_USER], check=True)
            pw = pwd.getpwnam(BENCH_USER)
            self.uid, self.gid, self.name = pw.pw_uid, pw.pw_gid, BENCH_USER
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.name = pwd.getpwuid(self.uid).pw_name

    def chown(self, path):
        if self.root:
            subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", path], check=True)

    def popen_kw(self, as_user):
        if self.root and as_user:
            return {"user": self.uid, "group": self.gid, "extra_groups": []}
        return {}


RUNNING = []


class Server:
    def __init__(self, name, app, argv, logfile, env=None, cwd=None, as_user=True, extra_log=None):
        self.name, self.app, self.argv, self.logfile = name, app, argv, logfile
        self.env, self.cwd, self.as_user, self.extra_log = env, cwd, as_user, extra_log
        self.proc = None

    def start(self, ident):
        self.logf = open(self.logfile, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                     start_new_session=True, **ident.popen_kw(self.as_user))
        RUNNING.append(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return tree(self.proc.pid) if self.alive() else []

    def log_tail(self, n=30):
        out = []
        for path in [self.logfile] + ([self.extra_log] if self.extra_log else []):
            try:
                with open(path, errors="replace") as f:
                    lines = f.read().splitlines()[-n:]
            except OSError:
                continue
            out.append(f"--- last {len(lines)} lines of {path}")
            out.extend("    " + l for l in lines)
        return "\n".join(out)

    def stop(self):
        """SIGTERM (to the main process: it stops its children), up to 15 s, then SIGKILL to
        the process group and any descendant seen before the stop (only processes we started)."""
        if self.proc is None:
            return
        if self in RUNNING:
            RUNNING.remove(self)
        seen = self.pids()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in seen:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        # Descendants that were reparented need a moment to go; bounded.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                                  not _zombie(p) for p in seen):
            time.sleep(0.05)
        self.logf.close()
        self.proc = None


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop_all(*_):
    for s in list(RUNNING):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {s.name}: {e}")


# ---------------------------------------------------------------- HTTP


def get(port, path, timeout=30):
    """(status, body) of GET http://127.0.0.1:port/path on a new connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_200(server, port, path, limit):
    """Retry GET until 200, as fast as possible (a refused connect returns at once; 2 ms pause),
    for at most `limit` seconds. Returns (seconds from now, body) or raises with the log tail."""
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < limit:
        if server is not None and not server.alive():
            raise Failure(f"{server.name} exited (status {server.proc.returncode}) before answering "
                          f"{path}\n{server.log_tail()}")
        try:
            status, body = get(port, path, timeout=max(1, limit - (time.monotonic() - t0)))
            if status == 200:
                return time.monotonic() - t0, body
            last = f"HTTP {status}"
            if status not in (502, 503):
                break
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.002)
    tail = server.log_tail() if server is not None else ""
    raise Failure(f"{server.name if server else '?'}: GET {path} did not answer 200 "
                  f"(last: {last}; waited {time.monotonic() - t0:.1f} s of {limit})\n{tail}")


def wait_log(server, text, limit):
    """Wait (at most `limit` seconds, polling every 50 ms) until the server's log has `text`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        with open(server.logfile, errors="replace") as f:
            if text in f.read():
                return time.monotonic() - t0
        if not server.alive():
            break
        time.sleep(0.05)
    raise Failure(f"{server.name}: no {text!r} in its log within {limit} s\n{server.log_tail()}")


class Failure(Exception):
    pass


class ChromeLinks(html.parser.HTMLParser):
    """href/src attributes under <prefix>/chrome/: the stylesheets, scripts and images a browser
    fetches with the page (not those referenced from CSS)."""

    def __init__(self, prefix):
        super().__init__()
        self.prefix, self.links = prefix.rstrip("/") + "/chrome/", []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v and v.startswith(self.prefix) and v not in self.links:
                if tag == "a":
                    continue
                self.links.append(v)


# ---------------------------------------------------------------- wrk


def wrk(port, path, duration, extra_paths=(), timeout_s=10):
    argv = ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", f"--timeout={timeout_s}s",
            "-s", LUA, f"http://127.0.0.1:{port}{path}"]
    if extra_paths:
        argv += ["--"] + list(extra_paths)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^BENCH-JSON (\{.*\})$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise Failure(f"wrk failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return r


# ---------------------------------------------------------------- servers


class Tally:
    """Checks passed and failed, with what failed (every suite here ends with the count).
    `say` logs a failure; a suite with a log of its own sets it."""

    say = staticmethod(log)

    def __init__(self):
        self.passed, self.failed, self.failures = 0, 0, []

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(f"{what}: {detail}")
            self.say(f"FAILED {what}: {detail}")


class Bench(Tally):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.P, self.T = args.processes, args.threads
        self.ident = Identity()
        self.work = os.path.join(SCRATCH, "work")
        self.logs = os.path.join(self.work, "logs")
        self.results = {"throughput": [], "coldstart": {}, "memory": {}}

    # ---- scratch
    def prepare(self):
        if os.path.isdir(self.work):
            shutil.rmtree(self.work)
        os.makedirs(self.logs)
        os.chmod(SCRATCH, 0o755)
        template = os.path.join(SCRATCH, "trac-template")
        if not os.path.isfile(os.path.join(template, ".bench-ready")):
            log("creating the Trac 1.6 environment template (trac-admin initenv)")
            shutil.rmtree(template, ignore_errors=True)
            subprocess.run([f"{VENV}/bin/trac-admin", template, "initenv", "bench",
                            "sqlite:db/trac.db"], check=True, stdout=subprocess.DEVNULL)
            open(os.path.join(template, ".bench-ready"), "w").close()
        self.template = template
        # Paddock's hello-world tenant (explicit, mounted at /).
        self.hello_dir = os.path.join(self.work, "hello-site")
        os.makedirs(self.hello_dir)
        self.ident.chown(self.work)

    def copy_env(self, dest):
        shutil.copytree(self.template, dest, symlinks=True)
        os.remove(os.path.join(dest, ".bench-ready"))
        return dest

    def logfile(self, name):
        return os.path.join(self.logs, name + ".log")

    def base_env(self, **extra):
        env = {"PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
               "HOME": self.work}
        env.update(extra)
        return env

    # ---- one server, one app: returns (Server, port, URL prefix of the app)
    def make(self, name, app, tag=None):
        port = free_port()
        addr = f"127.0.0.1:{port}"
        tag = tag or f"{name}-{app}"
        P, T = str(self.P), str(self.T)
        module = {"hello": "hello:application", "trac": "trac_app:application",
                  "trac-freeze": "trac_freeze_app:application"}[app]
        # Each server (each start) gets a fresh copy of the Trac environment, so that no run
        # sees what an earlier one left in the database or the log.
        trac_sites = os.path.join(self.work, f"trac-{tag}")
        trac_env = os.path.join(trac_sites, "bench")
        if app != "hello":
            os.makedirs(trac_sites)
            self.copy_env(trac_env)
            self.ident.chown(trac_sites)
        peer_env = self.base_env(BENCH_TRAC_ENV=trac_env)
        if name == "paddock":
            cfg = os.path.join(self.work, f"{tag}.toml")
            if app == "hello":
                body = (f'[tenants.hello]\ndir = "{self.hello_dir}"\nmount = "/"\n'
                        f'app = "hello:application"\npython_path = ["{APPS}"]\n')
                prefix = ""
            else:
                body = f'sites = "{trac_sites}"\n'
                prefix = "/trac/bench"
            self.write_paddock_config(cfg, addr, body, self.P)
            s = Server(name, app, [PADDOCK, "serve", "--config", cfg], self.logfile(tag),
                       env=dict(os.environ, PADDOCK_LOG=PADDOCK_LOG), as_user=False)
            return s, port, prefix
        if name == "apache":
            d = os.path.join(self.work, tag)
            os.makedirs(d)
            self.ident.chown(d)
            conf = os.path.join(d, "apache2.conf")
            script = os.path.join(APPS, module.split(":")[0] + ".py")
            user = f"User {BENCH_USER}\nGroup {BENCH_USER}\n" if self.ident.root else ""
            mods = "/usr/lib/apache2/modules"
            # A classic Trac deployment lets Apache serve Trac's static resources itself
            # (`trac-admin deploy` + Alias), as Paddock's router does: the same for both.
            aliases = "" if app == "hello" else f"""LoadModule alias_module {mods}/mod_alias.so
LoadModule mime_module {mods}/mod_mime.so
TypesConfig /etc/mime.types
Alias /chrome/common {TRAC_HTDOCS}
Alias /chrome/site {trac_env}/htdocs
<Directory {TRAC_HTDOCS}>
    Require all granted
</Directory>
<Directory {trac_env}/htdocs>
    Require all granted
</Directory>
"""
            with open(conf, "w") as f:
                f.write(f"""# Generated by bench/bench.py: a private Apache, nothing shared with /etc/apache2.
ServerRoot "{d}"
DefaultRuntimeDir "{d}"
PidFile "{d}/apache2.pid"
ErrorLog "{d}/error.log"
LogLevel warn
ServerName 127.0.0.1
Listen {addr}
{user}LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule env_module {mods}/mod_env.so
LoadModule wsgi_module {mods}/mod_wsgi.so
# Keep-alive as the other servers: no limit on requests per connection.
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
WSGISocketPrefix "{d}/wsgi"
WSGIDaemonProcess bench processes={P} threads={T} python-home={VENV} python-path={APPS} home={d}
WSGIProcessGroup bench
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias / {script}
SetEnv trac.env_path {trac_env}
<Directory {APPS}>
    Require all granted
</Directory>
{aliases}""")
            s = Server(name, app, ["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"], self.logfile(tag),
                       env=self.base_env(), cwd=d, as_user=False,
                       extra_log=os.path.join(d, "error.log"))
            return s, port, ""
        if name == "gunicorn":
            argv = [f"{VENV}/bin/gunicorn", "-k", "gthread", "-w", P, "--threads", T,
                    "-b", addr, "--chdir", APPS, module]
        elif name == "uwsgi":
            # --http: uWSGI's own HTTP router process in front of the workers (the setup the
            # issue names; like Paddock it is a hop across processes), with keep-alive to the
            # client. --die-on-term: SIGTERM stops (uWSGI 2.0 reloads on it otherwise).
            argv = [f"{VENV}/bin/uwsgi", "--http", addr, "--http-keepalive",
                    "--http-auto-chunked", "--master", "--processes", P, "--threads", T,
                    "--chdir", APPS, "--module", module, "--disable-logging", "--die-on-term",
                    "--need-app", "--single-interpreter"]
            if app != "hello":
                # Trac's static resources from disk, as Apache's Alias and Paddock do.
                argv += ["--static-map", f"/chrome/common={TRAC_HTDOCS}",
                         "--static-map", f"/chrome/site={trac_env}/htdocs"]
        elif name == "granian":
            argv = [f"{VENV}/bin/granian", "--interface", "wsgi", "--host", "127.0.0.1",
                    "--port", str(port), "--workers", P, "--blocking-threads", T,
                    "--working-dir", APPS]
            if app != "hello":
                argv += ["--static-path-route", "/chrome/common",
                         "--static-path-mount", TRAC_HTDOCS,
                         "--static-path-route", "/chrome/site",
                         "--static-path-mount", f"{trac_env}/htdocs"]
            argv.append(module)
        else:
            raise ValueError(name)
        return Server(name, app, argv, self.logfile(tag), env=peer_env, cwd=APPS), port, ""

    def write_paddock_config(self, cfg, addr, body, processes, defaults_extra=""):
        with open(cfg, "w") as f:
            f.write(f'# Generated by bench/bench.py\nlisten = "{addr}"\n{body}\n'
                    f'[defaults]\nprocesses = {processes}\nthreads = {self.T}\n'
                    f'virtualenv = "{VENV}"\n'
                    # Every bench tenant is the one bench user: nothing to hide between them.
                    f'allow_world_readable = true\n{defaults_extra}')
        # The file only: some bench tenants exist only to be listed (the router-memory run's
        # thousands of root-owned, never-started directories), which a tenant check refuses
        # and would import one by one.
        p = subprocess.run([PADDOCK, "check", "--file-only", cfg], capture_output=True, text=True)
        if p.returncode != 0:
            raise Failure(f"paddock check {cfg} failed:\n{p.stdout}{p.stderr}")

    # ---- throughput and latency
    def throughput(self, servers):
        a = self.args
        for name in servers:
            # The peers also with the freeze Paddock's worker does by default (trac-freeze:
            # bench/apps/trac_freeze_app.py), so the rows show the server's own share.
            apps = ("hello", "trac") if name == "paddock" else ("hello", "trac", "trac-freeze")
            for app in apps:
                what = f"{name} {app}"
                s = None
                try:
                    s, port, prefix = self.make(name, app)
                    log(f"{what}: starting")
                    s.start(self.ident)
                    page = prefix + ("/" if app == "hello" else "/wiki/WikiStart")
                    _, body = wait_200(s, port, page, 90)
                    if app != "hello" and b"WikiStart" not in body and b"wiki" not in body:
                        raise Failure(f"{what}: {page} is not a Trac wiki page")
                    runs = [(app, page, [])]
                    if app == "trac":
                        links = ChromeLinks(prefix or "/")
                        links.feed(body.decode("utf-8", "replace"))
                        res = []
                        for l in links.links:
                            st, _ = get(port, l)
                            if st == 200:
                                res.append(l)
                            else:
                                log(f"{what}: resource {l} answered {st}; left out")
                        runs.append(("trac-full", page, res))
                    self.check(f"{what} start and 200", True)
                    for label, path, res in runs:
                        paths = [path] + res if res else []
                        log(f"{what}: {label} warm-up {a.warmup} s, then {a.duration} s")
                        wrk(port, path, a.warmup, paths)
                        # Requests the warm-up left queued (wrk stops waiting, the server does
                        # not) would slow the measured run's start: one request on a new
                        # connection, answered after them, drains the queue first.
                        get(port, path, timeout=120)
                        r = wrk(port, path, a.duration, paths)
                        r["rss_mib"], r["pss_mib"] = memory(s.pids())
                        r.update(server=name, app=label, resources=len(res), paths=paths)
                        r["loads"] = r["rps"] / (1 + len(res)) if label == "trac-full" else None
                        self.results["throughput"].append(r)
                        log(f"{what}: {label} {r['rps']:.1f} req/s, p99 {r['p99_us']/1000:.1f} ms, "
                            f"{r['errors']} errors, PSS {r['pss_mib']:.0f} MiB")
                        # Errors are reported, not failed on: a smoke check fails only when a
                        # server does not start or does not answer 200.
                    st, _ = get(port, page)
                    self.check(f"{what} 200 after load", st == 200, f"HTTP {st}")
                except (Failure, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
                    self.check(what, False, str(e))
                finally:
                    if s is not None:
                        s.stop()

    # ---- cold start
    def coldstart(self, servers):
        n = self.args.cold_tenants
        cs = self.results["coldstart"]
        if "paddock" in servers:
            for app in ("hello", "trac"):
                what = f"paddock cold start {app}"
                s = None
                try:
                    sites = os.path.join(self.work, f"cold-{app}")
                    os.makedirs(sites)
                    names = [f"t{i:02d}" for i in range(1, n + 1)]
                    for t in names:
                        if app == "trac":
                            self.copy_env(os.path.join(sites, t))
                        else:
                            os.makedirs(os.path.join(sites, t, "conf"))
                            open(os.path.join(sites, t, "conf", "trac.ini"), "w").close()
                    self.ident.chown(sites)
                    port = free_port()
                    cfg = os.path.join(self.work, f"paddock-cold-{app}.toml")
                    extra = (f'app = "hello:application"\npython_path = ["{APPS}"]\n'
                             if app == "hello" else "")
                    self.write_paddock_config(cfg, f"127.0.0.1:{port}", f'sites = "{sites}"\n',
                                              self.P, extra)
                    s = Server("paddock", app, [PADDOCK, "serve", "--config", cfg],
                               self.logfile(f"paddock-cold-{app}"),
                               env=dict(os.environ, PADDOCK_LOG=PADDOCK_LOG), as_user=False)
                    s.start(self.ident)
                    wait_200(s, port, "/trac/", 30)  # the router is up; no pool started yet
                    if app == "trac":
                        # The zygote Trac's sites share starts at boot: measure a tenant's own
                        # cold start, not the rest of the zygote's warm-up.
                        wait_log(s, "Trac warm-up: ", 120)
                    times = []
                    for t in names:
                        path = f"/trac/{t}/" + ("wiki/WikiStart" if app == "trac" else "")
                        t0 = time.monotonic()
                        st, _ = get(port, path, timeout=60)
                        dt = time.monotonic() - t0
                        if st != 200:
                            raise Failure(f"GET {path}: HTTP {st}\n{s.log_tail()}")
                        times.append(dt)
                    cs[f"paddock/{app}"] = summary(times)
                    self.check(what, True)
                    log(f"{what}: p50 {cs[f'paddock/{app}']['p50_ms']:.0f} ms")
                except (Failure, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
                    self.check(what, False, str(e))
                finally:
                    if s is not None:
                        s.stop()
        # Every server from its process start, Paddock too: the peers have no on-demand
        # tenants, and a host's first page after a (re)start is what users see of this.
        for name in servers:
            label = "paddock (server start)" if name == "paddock" else name
            for app in ("hello", "trac"):
                what = f"{label} cold start {app}"
                times = []
                try:
                    for i in range(n):
                        s, port, prefix = self.make(name, app, tag=f"{name}-cold-{app}-{i}")
                        page = prefix + ("/" if app == "hello" else "/wiki/WikiStart")
                        try:
                            s.start(self.ident)
                            t0 = s.started
                            wait_200(s, port, page, 90)
                            times.append(time.monotonic() - t0)
                        finally:
                            s.stop()
                    cs[f"{label}/{app}"] = summary(times)
                    self.check(what, True)
                    log(f"{what}: p50 {cs[f'{label}/{app}']['p50_ms']:.0f} ms")
                except (Failure, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
                    self.check(what, False, str(e))

    # ---- memory
    def memory(self):
        mem = self.results["memory"]
        # Per additional active Trac tenant: k = 1 and k = 5 tenants, 1 process each.
        s = None
        try:
            sites = os.path.join(self.work, "mem-trac")
            os.makedirs(sites)
            names = [f"m{i}" for i in range(1, 6)]
            for t in names:
                self.copy_env(os.path.join(sites, t))
            self.ident.chown(sites)
            port = free_port()
            cfg = os.path.join(self.work, "paddock-mem-trac.toml")
            self.write_paddock_config(cfg, f"127.0.0.1:{port}", f'sites = "{sites}"\n', 1)
            s = Server("paddock", "trac", [PADDOCK, "serve", "--config", cfg],
                       self.logfile("paddock-mem-trac"),
                       env=dict(os.environ, PADDOCK_LOG=PADDOCK_LOG), as_user=False)
            s.start(self.ident)
            wait_200(s, port, "/trac/", 30)
            idle_workers = len(s.pids()) - 1
            pss = {}
            for k, t in enumerate(names, 1):
                wait_200(s, port, f"/trac/{t}/wiki/WikiStart", 60)
                if k in (1, 5):
                    time.sleep(1)  # let the pool settle
                    # The zygote (a direct child of the router; forked workers are its
                    # children) is counted in the PSS, once, but is not a worker.
                    others = [p for p in s.pids() if p != s.proc.pid]
                    zygotes = [p for p in others if is_zygote(p, s.proc.pid)]
                    workers = [p for p in others if p not in zygotes]
                    pss[k] = (len(workers), memory(others)[1], memory(zygotes)[1])
            router_rss, router_pss = memory([s.proc.pid])
            mem["trac_tenant"] = {
                "idle_workers": idle_workers, "workers_k1": pss[1][0], "pss_k1_mib": pss[1][1],
                "workers_k5": pss[5][0], "pss_k5_mib": pss[5][1], "zygote_pss_mib": pss[5][2],
                "per_tenant_mib": (pss[5][1] - pss[1][1]) / 4, "router_pss_mib": router_pss}
            self.check("paddock memory per Trac tenant", pss[1][0] == 1 and pss[5][0] == 5,
                       f"workers: {pss[1][0]} with 1 tenant, {pss[5][0]} with 5 (want 1 and 5)")
            log(f"memory per additional Trac tenant: {mem['trac_tenant']['per_tenant_mib']:.1f} MiB PSS")
        except (Failure, OSError, http.client.HTTPException, subprocess.SubprocessError, KeyError) as e:
            self.check("paddock memory per Trac tenant", False, str(e))
        finally:
            if s is not None:
                s.stop()
        # Router memory with N idle tenant directories vs none.
        try:
            n = self.args.tenant_dirs
            rss = {}
            for count in (0, n):
                sites = os.path.join(SCRATCH, f"dirs-{count}")
                if not os.path.isfile(os.path.join(sites, ".bench-ready")):
                    shutil.rmtree(sites, ignore_errors=True)
                    os.makedirs(sites)
                    for i in range(count):
                        os.makedirs(os.path.join(sites, f"s{i:05d}", "conf"))
                        open(os.path.join(sites, f"s{i:05d}", "conf", "trac.ini"), "w").close()
                    open(os.path.join(sites, ".bench-ready"), "w").close()
                port = free_port()
                cfg = os.path.join(self.work, f"paddock-dirs-{count}.toml")
                self.write_paddock_config(cfg, f"127.0.0.1:{port}", f'sites = "{sites}"\n', 1)
                s = Server("paddock", "index", [PADDOCK, "serve", "--config", cfg],
                           self.logfile(f"paddock-dirs-{count}"),
                           env=dict(os.environ, PADDOCK_LOG=PADDOCK_LOG), as_user=False)
                try:
                    s.start(self.ident)
                    _, body = wait_200(s, port, "/trac/", 60)
                    listed = body.count(b'href="/trac/s')
                    if listed < count:
                        raise Failure(f"the index lists {listed} of {count} tenants")
                    time.sleep(0.5)
                    # Workers only: the zygote the router starts at boot for the sites'
                    # Python configuration is not a worker of any tenant.
                    workers = [p for p in s.pids()
                               if p != s.proc.pid and not is_zygote(p, s.proc.pid)]
                    rss[count] = memory([s.proc.pid]) + (len(workers),)
                finally:
                    s.stop()
            mem["router"] = {"dirs": n, "rss0_mib": rss[0][0], "rssN_mib": rss[n][0],
                             "pss0_mib": rss[0][1], "pssN_mib": rss[n][1], "workers": rss[n][2],
                             "bytes_per_tenant": (rss[n][0] - rss[0][0]) * 1048576 / n}
            self.check(f"paddock router with {n} tenant dirs", rss[n][2] == 0,
                       f"{rss[n][2]} workers running for idle tenants")
            log(f"router: {mem['router']['bytes_per_tenant']:.0f} bytes RSS per idle tenant")
        except (Failure, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
            self.check(f"paddock router with {self.args.tenant_dirs} tenant dirs", False, str(e))


def summary(times):
    ms = sorted(t * 1000 for t in times)
    return {"n": len(ms), "p50_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1],
            "all_ms": [round(x, 1) for x in ms]}


# ---------------------------------------------------------------- machine and versions


def cmd_out(argv, **kw):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unavailable ({e})"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = proc_kib("self", "../meminfo", "MemTotal")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 1048576, 1),
            "kernel": platform.release(), "os": _os_release(), "load_at_start": load}


def _os_release():
    try:
        with open("/etc/os-release") as f:
            return dict(l.strip().split("=", 1) for l in f if "=" in l).get("PRETTY_NAME", "?").strip('"')
    except OSError:
        return "?"


def versions():
    def git(*a):
        try:
            p = subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True, timeout=30)
            return p.stdout.strip() if p.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        rev += " (with uncommitted changes)"
    first = lambda s: s.splitlines()[0] if s else "?"
    return {
        "paddock": f"{first(cmd_out([PADDOCK, '--version']))}, git {rev}",
        "apache": first(cmd_out(["/usr/sbin/apache2", "-v"])),
        "mod_wsgi": "libapache2-mod-wsgi-py3 " + cmd_out(["dpkg-query", "-W", "-f=${Version}",
                                                          "libapache2-mod-wsgi-py3"]),
        "gunicorn": first(cmd_out([f"{VENV}/bin/gunicorn", "--version"])),
        "uwsgi": "uWSGI " + first(cmd_out([f"{VENV}/bin/uwsgi", "--version"])),
        "granian": first(cmd_out([f"{VENV}/bin/granian", "--version"])),
        "trac": "Trac " + cmd_out([f"{VENV}/bin/python", "-c", "import trac; print(trac.__version__)"]),
        "python": first(cmd_out([f"{VENV}/bin/python", "-VV"])),
        "wrk": first(cmd_out(["wrk", "-v"])),
    }


# ---------------------------------------------------------------- report


def render(res, args):
    out = []
    m, v = res["machine"], res["versions"]
    out.append(f"Run {res['date']} ({'smoke' if args.smoke else 'full'} mode): each server "
               f"{args.processes} processes x {args.threads} threads; `wrk -t2 -c32 -d{args.duration}s` "
               f"after a {args.warmup} s warm-up, on 127.0.0.1.")
    if PROFILE != "release":
        out.append("")
        out.append(f"Paddock is the {PROFILE} build here (smoke mode checks that the suite works): "
                   "its figures mean nothing.")
    out.append("")
    out.append(f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
               f"Linux {m['kernel']}, {m['os']}; load average at start {m['load_at_start']}.")
    out.append("")
    out.append("Versions: " + "; ".join(v.values()) + ".")
    out.append("")
    tp = res["throughput"]
    if tp:
        out.append("### Throughput and latency")
        out.append("")
        out.append("| server | app | req/s | page loads/s | p50 ms | p99 ms | p99.9 ms | errors | RSS MiB | PSS MiB | Paddock ratio |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = {r["app"]: r for r in tp if r["server"] == "paddock"}
        for app in ("hello", "trac", "trac-freeze", "trac-full"):
            for r in (r for r in tp if r["app"] == app):
                key = "loads" if app == "trac-full" else "rps"
                # trac-freeze is compared with Paddock's trac row (which freezes by default).
                mine = base.get("trac" if app == "trac-freeze" else app)
                ratio = f"{mine[key] / r[key]:.2f}" if mine and r[key] else "-"
                loads = f"{r['loads']:.1f}" if r["loads"] is not None else ""
                out.append(f"| {r['server']} | {app}{' (1+%d)' % r['resources'] if app == 'trac-full' else ''} "
                           f"| {r['rps']:.1f} | {loads} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} "
                           f"| {r['p999_us']/1000:.2f} | {r['errors']} | {r['rss_mib']:.0f} "
                           f"| {r['pss_mib']:.0f} | {ratio} |")
        out.append("")
        out.append("Paddock ratio: Paddock's requests/s (page loads/s for trac-full) divided by "
                   "the row's; above 1 Paddock is faster. trac-freeze: the peer's Trac script "
                   "with `gc.freeze()` after its import and after its first request "
                   "(bench/apps/trac_freeze_app.py), what Paddock's worker does by default; "
                   "compared with Paddock's trac row. trac-full (1+N): the wiki page and its "
                   "N /chrome/ resources, cycled; latencies are per request.")
        out.append("")
    cs = res["coldstart"]
    if cs:
        out.append("### Cold start")
        out.append("")
        out.append("| server | app | p50 ms | min ms | max ms | n |")
        out.append("|---|---|---:|---:|---:|---:|")
        for key, c in cs.items():
            name, app = key.split("/")
            out.append(f"| {name} | {app} | {c['p50_ms']:.0f} | {c['min_ms']:.0f} | {c['max_ms']:.0f} | {c['n']} |")
        out.append("")
        out.append("paddock: first request for a never-started tenant to its 200, the router "
                   "already running (its zygote warm). paddock (server start) and the peers: "
                   "server process start to the first 200 of a request retried every 2 ms.")
        out.append("")
    mem = res["memory"]
    if mem:
        out.append("### Memory")
        out.append("")
        t = mem.get("trac_tenant")
        if t:
            out.append(f"- Per additional active Trac tenant (1 process each): "
                       f"**{t['per_tenant_mib']:.1f} MiB PSS** (workers' and zygote's PSS "
                       f"{t['pss_k1_mib']:.1f} MiB with 1 tenant, {t['pss_k5_mib']:.1f} MiB with 5, "
                       f"of which the zygote {t.get('zygote_pss_mib', 0):.1f} MiB; (PSS5 - PSS1) / 4). "
                       f"Processes before any request: {t['idle_workers']}.")
        r = mem.get("router")
        if r:
            out.append(f"- Router with {r['dirs']} idle tenant directories, index fetched: "
                       f"RSS {r['rssN_mib']:.1f} MiB vs {r['rss0_mib']:.1f} MiB with none: "
                       f"**{r['bytes_per_tenant']:.0f} bytes per tenant**; worker processes: {r['workers']}.")
        out.append("")
    if res["failures"]:
        out.append("### Failures")
        out.append("")
        out.extend(f"- {f.splitlines()[0]}" for f in res["failures"])
        out.append("")
    return "\n".join(out)


def write_doc(text):
    with open(DOC) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise Failure(f"{DOC} has no generated-results markers")
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(DOC, "w") as f:
        f.write(head + BEGIN + "\n\n" + text.rstrip() + "\n\n" + END + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CI mode: 2 s runs, 1 cold start, 100 dirs")
    ap.add_argument("--duration", type=int, help="seconds per measured wrk run (default 10; smoke 1)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up before each run (default 5; smoke 1)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--cold-tenants", type=int, help="cold starts per server and app (default 10; smoke 1)")
    ap.add_argument("--tenant-dirs", type=int, help="idle tenant dirs for router memory (default 10000; smoke 100)")
    ap.add_argument("--only", default="", help="comma-separated servers (" + ",".join(SERVERS) +
                    ") and/or sections (" + ",".join(SECTIONS) + "); default all")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args()
    args.duration = args.duration or (2 if args.smoke else 10)
    args.warmup = args.warmup or (1 if args.smoke else 5)
    args.cold_tenants = args.cold_tenants or (1 if args.smoke else 10)
    args.tenant_dirs = args.tenant_dirs or (100 if args.smoke else 10000)
    only = [x for x in args.only.split(",") if x]
    bad = [x for x in only if x not in SERVERS + SECTIONS]
    if bad:
        ap.error(f"--only: unknown {','.join(bad)} (know {','.join(SERVERS + SECTIONS)})")
    servers = [s for s in SERVERS if s in only] or SERVERS
    sections = [s for s in SECTIONS if s in only] or SECTIONS

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    b = Bench(args)
    started = time.monotonic()
    try:
        b.prepare()
        if "throughput" in sections:
            b.throughput(servers)
        if "coldstart" in sections:
            b.coldstart(servers)
        if "memory" in sections and "paddock" in servers:
            b.memory()
    except KeyboardInterrupt:
        b.check("run", False, "interrupted")
    except Failure as e:
        b.check("setup", False, str(e))
    finally:
        stop_all()

    res = dict(b.results, date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               mode="smoke" if args.smoke else "full", args=vars(args), machine=machine(),
               versions=versions(), failures=b.failures, seconds=round(time.monotonic() - started))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    jpath = os.path.join(SCRATCH, f"results-{stamp}.json")
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(SCRATCH, f"results-{stamp}.tsv"), "w") as f:
        f.write("server\tapp\treq_s\tpage_loads_s\tp50_ms\tp99_ms\tp999_ms\terrors\trss_mib\tpss_mib\n")
        for r in res["throughput"]:
            f.write(f"{r['server']}\t{r['app']}\t{r['rps']:.1f}\t{r['loads'] or ''}\t{r['p50_us']/1000:.2f}\t"
                    f"{r['p99_us']/1000:.2f}\t{r['p999_us']/1000:.2f}\t{r['errors']}\t"
                    f"{r['rss_mib']:.1f}\t{r['pss_mib']:.1f}\n")
    text = render(res, args)
    print(text)
    for f in b.failures:
        print(f"FAILED {f}\n", file=sys.stderr)
    print(f"results: {jpath} ({res['seconds']} s)")
    if not args.smoke and not only and not args.no_doc:
        write_doc(text)
        print(f"wrote the results section of {DOC}")
    print(f"bench{' smoke' if args.smoke else ''}: {b.passed} passed, {b.failed} failed")
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
