#!/usr/bin/python3.11
"""Density benchmark (issue 14 part 4): many Trac sites on one host, most of them quiet.

N fresh Trac 1.6 environments (one `trac-admin initenv`, copied N times with `cp -a`), traffic
spread over them Zipf-like (rank k gets a share proportional to k^-s, fixed seed) by a closed
loop of keep-alive clients (wrk with a generated Lua script) for a fixed time, against each
server alone, one after another:

- Paddock, processes = 1, threads = 5, `max_workers_total = 0` (uncapped), then with one or
  more caps (by default the cap that gives about a quarter of the uncapped run's memory, and
  Paddock's own default, which it derives from the machine's memory);
- Apache 2.4 (mpm_event) + mod_wsgi, one `WSGIDaemonProcess` per site (processes=1
  threads=5), chosen by rewrite rules (`WSGIProcessGroup %{ENV:trac.process_group}`);
- uWSGI's Emperor, one vassal per site (processes=1 threads=5), behind uWSGI's HTTP router
  with its subscription server (each vassal subscribes with the key `<site>.density`, the
  Host header the clients send it).

Memory is the PSS of the server's whole process tree, sampled every 2 s. Run through
bench/density.sh, which installs and builds what this needs. Standard library only; reuses
bench/bench.py's process, HTTP and machine helpers. Every wait is bounded in time and every
process is stopped by its PID (and its own process group)."""

import argparse
import datetime
import http.client
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench/bench.py: the side-by-side suite's helpers)

WORK = os.path.join(B.SCRATCH, "density-work")
TEMPLATE = os.path.join(B.SCRATCH, "density-template")
TRAC_SCRIPT = os.path.join(B.APPS, "trac_app.py")
BEGIN = "<!-- BEGIN DENSITY RESULTS -->"
END = "<!-- END DENSITY RESULTS -->"
SERVERS = ["paddock", "paddock-cap", "apache", "uwsgi"]
SAMPLE_EVERY = 2.0
HOST_SUFFIX = ".density"

# The load: wrk's Lua. Each thread builds the N requests once, then draws a site per request
# from the Zipf CDF (binary search); its random sequence is seeded with seed + thread number.
# done() prints one JSON line (as bench/lua/report.lua does) with p99.9 and the errors.
LUA = r"""
local cdf, reqs, n = {}, {}, 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  n = tonumber(args[1])
  local s, seed, by_host = tonumber(args[2]), tonumber(args[3]), args[4] == "host"
  local total = 0
  for k = 1, n do
    total = total + k ^ (-s)
    cdf[k] = total
  end
  for k = 1, n do
    cdf[k] = cdf[k] / total
    local name = string.format("s%03d", k)
    local headers = {}
    if by_host then
      headers["Host"] = name .. "HOST_SUFFIX"
    end
    reqs[k] = wrk.format("GET", "/trac/" .. name .. "/wiki/WikiStart", headers)
  end
  math.randomseed(seed + (tid or 0))
end

function request()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return reqs[lo]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
""".replace("HOST_SUFFIX", HOST_SUFFIX)


def site_names(n):
    """s001 ... sN: s001 is the busiest (Zipf rank 1)."""
    return [f"s{k:03d}" for k in range(1, n + 1)]


def zipf_shares(n, s):
    """The share of requests each rank gets: k^-s normalised."""
    w = [k ** -s for k in range(1, n + 1)]
    total = sum(w)
    return [x / total for x in w]


def mem_available_mib():
    """MemAvailable of the whole machine, MiB."""
    return B.proc_kib("self", "../meminfo", "MemAvailable") / 1024


# ---------------------------------------------------------------- sites


def make_template():
    """One fresh Trac 1.6 environment (SQLite), made once with trac-admin initenv."""
    marker = os.path.join(TEMPLATE, ".density-ready")
    if os.path.isfile(marker):
        return
    B.log("creating the Trac 1.6 environment template (trac-admin initenv)")
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    subprocess.run([f"{B.VENV}/bin/trac-admin", TEMPLATE, "initenv", "density",
                    "sqlite:db/trac.db"], check=True, stdout=subprocess.DEVNULL, timeout=120)
    open(marker, "w").close()


def make_sites(ident, parent, n):
    """A Paddock sites directory with n fresh copies of the template (cp -a), owned by the
    bench user: <parent>/sites/<name>/conf/trac.ini. Returns its path."""
    sites = os.path.join(parent, "sites")
    os.makedirs(sites)
    for name in site_names(n):
        dest = os.path.join(sites, name)
        subprocess.run(["cp", "-a", TEMPLATE, dest], check=True, timeout=60)
        os.remove(os.path.join(dest, ".density-ready"))
    ident.chown(parent)
    return sites


# ---------------------------------------------------------------- measuring a process tree


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds: the PSS of the server's whole process tree, its number of
    processes, how many of them have loaded Trac (mapped `_sqlite3`, which Trac imports, while
    their parent has not: a fork of a loaded process is not a load) and, for Paddock, its
    /metrics. Also watches MemAvailable and sets `low_memory` when it falls below the floor."""

    def __init__(self, server, t0, metrics_port=None, floor_mib=0):
        super().__init__(daemon=True)
        self.server, self.t0, self.metrics_port, self.floor = server, t0, metrics_port, floor_mib
        self.samples, self.loaded, self.checked = [], set(), {}
        self.low_memory = threading.Event()
        self.stopping = threading.Event()

    def has_trac(self, pid):
        """Whether pid maps Trac's sqlite3 extension (cached once true)."""
        if pid in self.loaded:
            return True
        try:
            with open(f"/proc/{pid}/maps") as f:
                hit = "_sqlite3" in f.read()
        except OSError:
            return False
        if hit:
            self.loaded.add(pid)
        return hit

    def trac_loads(self, pids):
        """Processes of pids that loaded Trac themselves (their parent did not)."""
        loads = 0
        for p in pids:
            if not self.has_trac(p):
                continue
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if not self.has_trac(ppid):
                loads += 1
        return loads

    def sample(self):
        """One sample, appended to self.samples and returned."""
        pids = self.server.pids()
        s = {"t": round(time.monotonic() - self.t0, 1),
             "pss_mib": round(B.memory(pids)[1], 1), "procs": len(pids),
             "trac_loaded": self.trac_loads(pids),
             "available_mib": round(mem_available_mib())}
        if self.metrics_port:
            m = paddock_metrics(self.metrics_port)
            if m:
                s.update(workers=m["workers"], spawns=m["spawns"], evictions=m["evictions"])
        self.samples.append(s)
        if self.floor and s["available_mib"] < self.floor:
            self.low_memory.set()
        return s

    def run(self):
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(SAMPLE_EVERY)

    def stop(self):
        self.stopping.set()
        self.join(30)


def paddock_metrics(port):
    """Sums over tenants from Paddock's /metrics: ready workers, worker spawns, evictions by
    kind, refusals by reason; None when it does not answer."""
    try:
        status, body = B.get(port, "/metrics", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    out = {"workers": 0, "spawns": 0, "evictions": {}, "rejected": {}}
    for line in body.decode("utf-8", "replace").splitlines():
        m = re.match(r"^(paddock_[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "paddock_workers" and 'state="ready"' in labels:
            out["workers"] += int(value)
        elif name == "paddock_worker_spawns_total":
            out["spawns"] += int(value)
        elif name in ("paddock_pool_evictions_total", "paddock_rejected_requests_total"):
            key = re.search(r'(?:kind|reason)="([^"]*)"', labels)
            bucket = out["evictions" if name == "paddock_pool_evictions_total" else "rejected"]
            k = key.group(1) if key else "?"
            bucket[k] = bucket.get(k, 0) + int(value)
    return out


# ---------------------------------------------------------------- servers


class Density(B.Tally):
    """One density run: the template, then each server with its own fresh sites."""

    def __init__(self, args):
        super().__init__()
        self.args = args
        self.ident = B.Identity()
        self.logs = os.path.join(WORK, "logs")
        self.lua = os.path.join(WORK, "density.lua")
        self.results = []

    def prepare(self):
        """A clean work directory, the Lua script and the Trac template."""
        if os.path.isdir(WORK):
            shutil.rmtree(WORK)
        os.makedirs(self.logs)
        os.chmod(B.SCRATCH, 0o755)
        with open(self.lua, "w") as f:
            f.write(LUA)
        make_template()
        self.ident.chown(WORK)

    def paddock(self, d, sites, cap):
        """Paddock serving the sites directory (cap None: max_workers_total left to its
        default): (Server, port, admin port)."""
        port, admin = B.free_port(), B.free_port()
        cfg = os.path.join(d, "paddock.toml")
        budget = "" if cap is None else f"max_workers_total = {cap}\n"
        with open(cfg, "w") as f:
            f.write(f'# Generated by bench/density.py\nlisten = "127.0.0.1:{port}"\n'
                    f'sites = "{sites}"\n{budget}\n'
                    f'[admin]\nlisten = "127.0.0.1:{admin}"\nsignup = false\n\n'
                    f'[defaults]\nprocesses = 1\nthreads = 5\nvirtualenv = "{B.VENV}"\n'
                    # Every site is the one bench user's: nothing to hide between them.
                    'allow_world_readable = true\n'
                    # rlimit_nproc (default 512) counts the processes and threads of the
                    # tenant's uid across all its pools: meant for one user per site, it
                    # stops one user's 300 sites at about 85 workers of 5 threads (thread
                    # creation fails, EAGAIN). Here every site is the one bench user.
                    'rlimit_nproc = 0\n')
        p = subprocess.run([B.PADDOCK, "check", "--file-only", cfg], capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            raise B.Failure(f"paddock check {cfg} failed:\n{p.stdout}{p.stderr}")
        s = B.Server("paddock", "trac", [B.PADDOCK, "serve", "--config", cfg],
                     os.path.join(self.logs, os.path.basename(d) + ".log"),
                     env=dict(os.environ, PADDOCK_LOG=B.PADDOCK_LOG), as_user=False)
        return s, port, admin

    def apache(self, d, sites, n):
        """Apache + mod_wsgi, one daemon per site chosen by rewrite rules: (Server, port)."""
        port = B.free_port()
        mods = "/usr/lib/apache2/modules"
        user = f"User {B.BENCH_USER}\nGroup {B.BENCH_USER}\n" if self.ident.root else ""
        owner = f" user={B.BENCH_USER} group={B.BENCH_USER}" if self.ident.root else ""
        daemons = "".join(f"WSGIDaemonProcess {name} processes=1 threads=5{owner} "
                          f"python-home={B.VENV} display-name=%{{GROUP}} home={sites}/{name}\n"
                          for name in site_names(n))
        conf = os.path.join(d, "apache2.conf")
        with open(conf, "w") as f:
            f.write(f"""# Generated by bench/density.py: a private Apache, nothing shared with /etc/apache2.
ServerRoot "{d}"
DefaultRuntimeDir "{d}"
PidFile "{d}/apache2.pid"
ErrorLog "{d}/error.log"
LogLevel warn
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
{user}LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule env_module {mods}/mod_env.so
LoadModule rewrite_module {mods}/mod_rewrite.so
LoadModule wsgi_module {mods}/mod_wsgi.so
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
WSGISocketPrefix "{d}/wsgi"
{daemons}RewriteEngine On
RewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)
RewriteCond {sites}/%1/conf/trac.ini !-f
RewriteRule . - [F]
RewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)
RewriteRule . - [E=trac.process_group:%1,E=trac.env_path:{sites}/%1]
WSGIScriptAliasMatch ^/trac/([^/]+) {TRAC_SCRIPT}
<Directory {B.APPS}>
    WSGIProcessGroup %{{ENV:trac.process_group}}
    WSGIApplicationGroup %{{GLOBAL}}
    Require all granted
</Directory>
""")
        s = B.Server("apache", "trac", ["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"],
                     os.path.join(self.logs, "apache.log"), env=self.base_env(), cwd=d,
                     as_user=False, extra_log=os.path.join(d, "error.log"))
        return s, port

    def uwsgi(self, d, sites, n):
        """uWSGI: an HTTP router with a subscription server, and an Emperor with one vassal ini
        per site (each subscribes its socket under `<site>.density`): (Server, port)."""
        port, sub = B.free_port(), B.free_port()
        vassals, socks = os.path.join(d, "vassals"), os.path.join(d, "sockets")
        os.makedirs(vassals)
        os.makedirs(socks)
        for name in site_names(n):
            with open(os.path.join(vassals, f"{name}.ini"), "w") as f:
                f.write(f"""[uwsgi]
master = true
processes = 1
threads = 5
socket = {socks}/{name}.sock
subscribe-to = 127.0.0.1:{sub}:{name}{HOST_SUFFIX}
chdir = {B.APPS}
mount = /trac/{name}={TRAC_SCRIPT}
manage-script-name = true
env = BENCH_TRAC_ENV={sites}/{name}
single-interpreter = true
need-app = true
disable-logging = true
die-on-term = true
procname-prefix-spaced = {name}
""")
        self.ident.chown(d)
        # --http-auto-chunked: keep-alive for responses without Content-Length (as bench.py).
        argv = [f"{B.VENV}/bin/uwsgi", "--master", "--http", f"127.0.0.1:{port}",
                "--http-keepalive", "--http-auto-chunked",
                "--http-subscription-server", f"127.0.0.1:{sub}",
                "--emperor", vassals, "--die-on-term", "--disable-logging"]
        s = B.Server("uwsgi", "trac", argv, os.path.join(self.logs, "uwsgi.log"),
                     env=self.base_env(), cwd=d)
        return s, port

    def base_env(self):
        """The peers' process environment (as bench.py gives its peers)."""
        return {"PATH": f"{B.VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "LANG": "C.UTF-8", "HOME": WORK}

    # ---- readiness: up, but no site's Trac touched
    def ready(self, kind, s, port, n):
        """Wait until the server can serve without sending any site a request: Paddock's index
        answers and its zygote is warm; Apache answers (404) outside every site; every uWSGI
        vassal has subscribed to the router. Returns the seconds since the server started."""
        limit = self.args.start_timeout
        if kind == "paddock":
            B.wait_200(s, port, "/trac/", 60)
            wait_for(lambda: "zygote warm" in read(s.logfile), s, limit, "zygote warm in the log")
        elif kind == "apache":
            wait_for(lambda: answers(port, "/"), s, limit, "an answer to GET /")
        else:
            wait_for(lambda: read(s.logfile).count("new node:") >= n, s, limit,
                     f"{n} vassals subscribed")
        return time.monotonic() - s.started

    # ---- one server, measured
    def run_one(self, label, kind, cap=0):
        """Fresh sites, the server, readiness, the load with memory sampled, its results."""
        a = self.args
        n = a.sites
        d = os.path.join(WORK, label.replace(" ", "-").replace("=", ""))
        os.makedirs(d)
        s = admin = None
        sampler = None
        try:
            sites = make_sites(self.ident, d, n)
            if kind == "paddock":
                s, port, admin = self.paddock(d, sites, cap)
            elif kind == "apache":
                s, port = self.apache(d, sites, n)
            else:
                s, port = self.uwsgi(d, sites, n)
            B.log(f"{label}: starting ({n} sites)")
            s.start(self.ident)
            boot_s = self.ready(kind, s, port, n)
            sampler = Sampler(s, time.monotonic(), admin, a.min_available_mib)
            before = sampler.sample()
            B.log(f"{label}: ready after {boot_s:.1f} s, PSS {before['pss_mib']:.0f} MiB, "
                  f"{before['procs']} processes; load {a.duration} s, {a.clients} clients")
            sampler.start()
            r = self.load(port, kind == "uwsgi", sampler)
            sampler.stop()
            end = sampler.sample()
            during = sampler.samples[1:]
            r.update(server=label, kind=kind, cap=cap, sites=n, boot_s=round(boot_s, 1),
                     pss_before_mib=before["pss_mib"],
                     pss_peak_mib=max(x["pss_mib"] for x in during),
                     pss_end_mib=end["pss_mib"], procs_end=end["procs"],
                     trac_loads_before=before["trac_loaded"],
                     trac_loads_end=end["trac_loaded"], samples=sampler.samples,
                     low_memory=sampler.low_memory.is_set())
            if admin:
                m = paddock_metrics(admin) or {}
                r["workers_peak"] = max(x.get("workers", 0) for x in during)
                r["workers_end"] = m.get("workers", 0)
                # Spawns before the load: none (no request yet; the zygote is not a worker).
                r["spawns"] = m.get("spawns", 0) - before.get("spawns", 0)
                r["evictions"] = m.get("evictions", {})
                r["rejected"] = m.get("rejected", {})
            # A check request for the busiest site, then the 200 the smoke mode asks for.
            status = check_status(port, "s001", kind == "uwsgi")
            r["check_status"] = status
            self.check(f"{label}: 200 after the load", status == 200, f"HTTP {status}")
            self.check(f"{label}: some 200s under load", r["requests"] > r["status"],
                       f"{r['requests']} requests, {r['status']} not 2xx/3xx")
            self.results.append(r)
            B.log(f"{label}: {r['rps']:.1f} req/s, p50 {r['p50_us'] / 1000:.0f} ms, p99 "
                  f"{r['p99_us'] / 1000:.0f} ms, p99.9 {r['p999_us'] / 1000:.0f} ms, "
                  f"{r['errors']} errors, PSS peak {r['pss_peak_mib']:.0f} end "
                  f"{r['pss_end_mib']:.0f} MiB, {cold_text(r)}")
            return r
        except (B.Failure, OSError, subprocess.SubprocessError) as e:
            self.check(label, False, str(e))
            return None
        finally:
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            if s is not None:
                s.stop()
            shutil.rmtree(os.path.join(d, "sites"), ignore_errors=True)

    def load(self, port, by_host, sampler):
        """wrk for the duration (stopped early with SIGINT, which makes it report, if the
        machine runs low on memory). Returns wrk's figures with rps and errors."""
        a = self.args
        threads = min(2, a.clients)
        argv = ["wrk", f"-t{threads}", f"-c{a.clients}", f"-d{a.duration}s", "--latency",
                f"--timeout={a.request_timeout}s", "-s", self.lua, f"http://127.0.0.1:{port}/",
                "--", str(a.sites), str(a.zipf_s), str(a.seed), "host" if by_host else "path"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + a.duration + 120
        stopped_early = False
        while p.poll() is None and time.monotonic() < deadline:
            if sampler.low_memory.wait(0.5) and not stopped_early:
                B.log(f"MemAvailable below {a.min_available_mib} MiB: stopping the load")
                p.send_signal(signal.SIGINT)
                stopped_early = True
        if p.poll() is None:
            p.kill()
        out, err = p.communicate(timeout=30)
        m = re.search(r"^BENCH-JSON (\{.*\})$", out, re.M)
        if not m:
            raise B.Failure(f"wrk failed (exit {p.returncode}):\n{out}\n{err}")
        r = json.loads(m.group(1))
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
        r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
        r["stopped_early"] = stopped_early
        return r

    def run(self):
        """Every selected server, one after another; the caps after the uncapped run."""
        a = self.args
        uncapped = None
        if "paddock" in a.servers:
            uncapped = self.run_one("paddock uncapped", "paddock", 0)
        if "paddock-cap" in a.servers:
            for cap in a.cap:
                if cap == "default":
                    self.run_one(f"paddock default cap={paddock_default_cap()}", "paddock", None)
                    continue
                n = quarter_cap(uncapped) if cap == "quarter" else int(cap)
                if n:
                    self.run_one(f"paddock cap={n}", "paddock", n)
                else:
                    self.check("paddock cap", False, "no uncapped run to size the quarter cap")
        if "apache" in a.servers:
            self.run_one("apache", "apache")
        if "uwsgi" in a.servers:
            self.run_one("uwsgi emperor", "uwsgi")


def paddock_default_cap():
    """max_workers_total as Paddock derives it when unset (config/src/limits.rs): half of
    MemTotal at 64 MiB per worker, at least 8."""
    return max(8, B.proc_kib("self", "../meminfo", "MemTotal") // 2 // 65536)


def quarter_cap(uncapped):
    """The max_workers_total that gives about a quarter of the uncapped run's peak PSS: the
    router and zygote's PSS before the load is fixed, the rest divided among the workers."""
    if not uncapped or not uncapped.get("workers_peak"):
        return 0
    base, peak = uncapped["pss_before_mib"], uncapped["pss_peak_mib"]
    per_worker = (peak - base) / uncapped["workers_peak"]
    return max(2, int((peak / 4 - base) / per_worker)) if per_worker > 0 else 2


def cold_text(r):
    """Cold starts and evictions of a result, in words: Paddock's from its /metrics, the
    peers' as processes that loaded Trac (see Sampler)."""
    during = r["trac_loads_end"] - r["trac_loads_before"]
    if r["kind"] == "paddock":
        ev = r.get("evictions", {})
        text = (f"{r.get('spawns', 0)} worker starts; evictions: {ev.get('shrink', 0)} shrink, "
                f"{ev.get('stop', 0)} stop; workers at most {r.get('workers_peak', 0)}")
    elif r["kind"] == "apache":
        text = f"{during} daemons loaded Trac during the load ({r['procs_end']} processes)"
    else:
        text = (f"{r['trac_loads_before']} vassals loaded Trac at boot ({r['boot_s']:.0f} s), "
                f"{during} during the load ({r['procs_end']} processes)")
    if r.get("stopped_early"):
        text += "; load stopped early: machine low on memory"
    return text


# ---------------------------------------------------------------- small helpers


def read(path):
    """A log file's text ('' when it cannot be read)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def answers(port, path):
    """Whether the server gives any HTTP answer to GET path."""
    try:
        B.get(port, path, timeout=5)
        return True
    except (OSError, http.client.HTTPException):
        return False


def wait_for(cond, server, limit, what):
    """Poll cond every 0.2 s for at most limit seconds; raise with the log tail if it never
    holds or the server exits."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if cond():
            return
        if not server.alive():
            raise B.Failure(f"{server.name} exited before {what}\n{server.log_tail()}")
        time.sleep(0.2)
    raise B.Failure(f"{server.name}: no {what} within {limit} s\n{server.log_tail()}")


def check_status(port, name, by_host):
    """Status of one GET of the site's wiki page on a new connection (0 if no answer)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        host = name + HOST_SUFFIX if by_host else f"127.0.0.1:{port}"
        c.request("GET", f"/trac/{name}/wiki/WikiStart", headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        c.close()


# ---------------------------------------------------------------- report


def render(res, args):
    """The markdown the run prints (and the full mode writes into docs/benchmarks.md)."""
    m, v = res["machine"], res["versions"]
    top = zipf_shares(args.sites, args.zipf_s)
    out = [f"Run {res['date']} ({'smoke' if args.smoke else 'full'} mode): {args.sites} Trac "
           f"sites, Zipf s={args.zipf_s} (seed {args.seed}; the busiest site gets "
           f"{top[0] * 100:.1f}% of requests, the top 10 {sum(top[:10]) * 100:.0f}%, the "
           f"quietest {top[-1] * 100:.3f}%), `wrk -t{min(2, args.clients)} -c{args.clients} "
           f"-d{args.duration}s --timeout={args.request_timeout}s`, closed loop, keep-alive, "
           "GET `/trac/<site>/wiki/WikiStart`; every server 1 process x 5 threads per site.",
           "",
           f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux "
           f"{m['kernel']}, {m['os']}; load average at start {m['load_at_start']}"
           f"{'; ' + res['ci_note'] if res.get('ci_note') else ''}.",
           "",
           "Versions: " + "; ".join(v[k] for k in ("paddock", "apache", "mod_wsgi", "uwsgi",
                                                   "trac", "python", "wrk")) + ".",
           "",
           "| server | sites | req/s | p50 ms | p99 ms | p99.9 ms | errors | peak PSS MiB "
           "| end PSS MiB | cold starts / evictions |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["results"]:
        err = f"{r['errors']}"
        kinds = [f"{k} {r[k]}" for k in ("connect", "read", "write", "status", "timeout") if r[k]]
        if kinds:
            err += f" ({', '.join(kinds)})"
        cold = cold_text(r)
        out.append(f"| {r['server']} | {r['sites']} | {r['rps']:.1f} | {r['p50_us'] / 1000:.0f} "
                   f"| {r['p99_us'] / 1000:.0f} | {r['p999_us'] / 1000:.0f} | {err} "
                   f"| {r['pss_peak_mib']:.0f} | {r['pss_end_mib']:.0f} | {cold} |")
    out += ["", "PSS of the whole process tree over the load (MiB; before = ready, no request "
            "yet):", ""]
    marks = list(range(0, args.duration + 1, max(1, args.duration // 6)))
    out.append("| server | before | " + " | ".join(f"{t} s" for t in marks) + " |")
    out.append("|---|---:|" + "---:|" * len(marks))
    for r in res["results"]:
        during = r["samples"][1:]
        cells = []
        for t in marks:
            near = min(during, key=lambda x: abs(x["t"] - t)) if during else None
            cells.append(f"{near['pss_mib']:.0f}" if near else "")
        out.append(f"| {r['server']} | {r['pss_before_mib']:.0f} | " + " | ".join(cells) + " |")
    out.append("")
    if res["failures"]:
        out += ["Failures:", ""] + [f"- {f.splitlines()[0]}" for f in res["failures"]] + [""]
    return "\n".join(out)


def write_doc(text):
    """Replace what is between the density markers of docs/benchmarks.md."""
    with open(B.DOC) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise B.Failure(f"{B.DOC} has no density markers ({BEGIN})")
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(B.DOC, "w") as f:
        f.write(head + BEGIN + "\n\n" + text.rstrip() + "\n\n" + END + tail)


def ci_running():
    """Whether a CI run (bash .ci/run) is on the machine: pgrep's matches, less this process's
    own ancestors (a shell that waited for CI itself has the words in its command line)."""
    p = subprocess.run(["pgrep", "-f", "bash .ci/run"], capture_output=True, text=True)
    mine, pid = set(), os.getpid()
    while pid > 1 and len(mine) < 1000:
        mine.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return any(int(x) not in mine for x in p.stdout.split())


def wait_for_ci(limit):
    """Wait (polling every 30 s, at most limit seconds) until no CI run is on the machine.
    Returns a note for the report when one was still running at the end."""
    t0 = time.monotonic()
    while ci_running() and time.monotonic() - t0 < limit:
        B.log("a CI run is on the machine; waiting (polling every 30 s)")
        time.sleep(30)
    if ci_running():
        return f"a CI run was on the machine throughout (waited {limit // 60} min for it)"
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="quick check: 6 sites, 2 clients, 5 s, one cap of 2")
    ap.add_argument("--sites", type=int, help="Trac sites (default 300; smoke 6)")
    ap.add_argument("--clients", type=int, help="keep-alive clients (default 16; smoke 2)")
    ap.add_argument("--duration", type=int, help="seconds of load per server (default 90; smoke 5)")
    ap.add_argument("--cap", action="append",
                    help="max_workers_total of a capped Paddock run: a number, 'quarter' "
                         "(about 1/4 of the uncapped run's peak PSS) or 'default' (left "
                         "unset: Paddock's own); repeatable (default: quarter and default; "
                         "smoke: 2)")
    ap.add_argument("--zipf-s", type=float, default=1.1, help="Zipf exponent (default 1.1)")
    ap.add_argument("--seed", type=int, default=14, help="random seed of the load (default 14)")
    ap.add_argument("--request-timeout", type=int, default=60,
                    help="wrk's per-request timeout, seconds (default 60)")
    ap.add_argument("--start-timeout", type=int, default=900,
                    help="seconds a server may take to be ready (default 900)")
    ap.add_argument("--min-available-mib", type=int, default=4096,
                    help="stop a server's load when MemAvailable falls below this "
                         "(default 4096: the machine is shared)")
    ap.add_argument("--ci-wait", type=int, default=1800,
                    help="full mode: seconds to wait for a CI run to end first (default 1800)")
    ap.add_argument("--only", default="", help="comma-separated servers (" + ",".join(SERVERS) +
                    "); default all")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args()
    args.sites = args.sites or (6 if args.smoke else 300)
    args.clients = args.clients or (2 if args.smoke else 16)
    args.duration = args.duration or (5 if args.smoke else 90)
    args.cap = args.cap or (["2"] if args.smoke else ["quarter", "default"])
    bad = [c for c in args.cap if c not in ("quarter", "default") and not c.isdigit()]
    if bad:
        ap.error(f"--cap: a number, quarter or default, not {','.join(bad)}")
    if not 1 <= args.sites <= 999:
        ap.error("--sites: 1 to 999")
    only = [x for x in args.only.split(",") if x]
    bad = [x for x in only if x not in SERVERS]
    if bad:
        ap.error(f"--only: unknown {','.join(bad)} (know {','.join(SERVERS)})")
    args.servers = only or SERVERS

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    # Hundreds of daemons and sockets: the hard descriptor limit for every server.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ci_note = "" if args.smoke else wait_for_ci(args.ci_wait)
    mach = B.machine()
    d = Density(args)
    started = time.monotonic()
    try:
        d.prepare()
        d.run()
    except KeyboardInterrupt:
        d.check("run", False, "interrupted")
    except (B.Failure, OSError, subprocess.SubprocessError) as e:
        d.check("setup", False, str(e))
    finally:
        B.stop_all()

    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "mode": "smoke" if args.smoke else "full", "args": vars(args), "machine": mach,
           "versions": B.versions(), "ci_note": ci_note, "results": d.results,
           "failures": d.failures, "seconds": round(time.monotonic() - started)}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    jpath = os.path.join(B.SCRATCH, f"density-{stamp}.json")
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1)
    text = render(res, args)
    print(text)
    for f in d.failures:
        print(f"FAILED {f}\n", file=sys.stderr)
    print(f"results: {jpath} ({res['seconds']} s)")
    if not args.smoke and not only and not args.no_doc:
        write_doc(text)
        print(f"wrote the density results in {B.DOC}")
    print(f"density{' smoke' if args.smoke else ''}: {d.passed} passed, {d.failed} failed")
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
