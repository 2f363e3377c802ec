#!/usr/bin/python3.11
"""HTTP/2 and TLS benchmark (issue 14 part 5): one Trac page load over TLS with HTTP/2 (ALPN),
over TLS with HTTP/1.1, over h2c (prior knowledge) and over plain HTTP/1.1, driven by h2load,
against Paddock's release build and Apache 2.4 (mpm_event, mod_ssl, mod_http2, mod_wsgi daemon
mode) serving the same fresh Trac 1.6 environment.

- A throwaway CA and a certificate for trac.test (EC P-256, openssl) under target/bench/h2/.
- Both servers run at once, each with a plain and a TLS listener on free 127.0.0.1 ports, 2
  processes x 4 threads for Trac, Trac's /chrome/ files served by the server itself.
- The URLs are the wiki page /trac/demo/wiki/WikiStart and the /chrome/ resources its HTML
  links (as a browser fetches them, including a 404 for the fresh site's missing logo);
  h2load cycles through them on each connection.
- One warm-up run per server, then rounds: in each round every variant runs against both
  servers back to back (the server order alternates from round to round).

Run through bench/h2.sh (which installs and builds what this needs), under the machine's
benchmark lock: flock /tmp/paddock-bench.lock bench/h2.sh [--smoke]. Standard library only;
reuses bench/bench.py's process, HTTP and machine helpers. Every wait is bounded in time and
every process is stopped by its PID (and its own process group)."""

import argparse
import datetime
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench/bench.py: the side-by-side suite's helpers)

WORK = os.path.join(B.SCRATCH, "h2")
PADDOCK = os.path.join(B.REPO, "target", "release", "paddock")
TRAC_SCRIPT = os.path.join(B.APPS, "trac_app.py")
MODULES = "/usr/lib/apache2/modules"
HOST = "trac.test"
SITE = "demo"
PAGE = f"/trac/{SITE}/wiki/WikiStart"
SERVERS = ["paddock", "apache"]
# (variant, listener, h2load options). "tls": https://trac.test:<TLS port>/..., connected at
# 127.0.0.1 (--connect-to), so SNI and :authority are trac.test; "plain": http://127.0.0.1:<port>.
# "-m PAGE" stands for the number of URLs: one page's worth of streams per connection.
VARIANTS = [
    ("tls-h2", "tls", ["-c", "4", "-m", "PAGE"]),
    ("tls-h1-c4", "tls", ["--h1", "-c", "4"]),
    ("tls-h1-c24", "tls", ["--h1", "-c", "24"]),
    ("h2c", "plain", ["-c", "4", "-m", "PAGE"]),
    ("h1-c4", "plain", ["--h1", "-c", "4"]),
    ("h1-c24", "plain", ["--h1", "-c", "24"]),
]
CI_WAIT_S, CI_POLL_S = 20 * 60, 30


def log(msg):
    print(f"[h2 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, **kw):
    """Run a setup command (bounded to 5 minutes); raise Failure with its output if it fails."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    if p.returncode != 0:
        raise B.Failure(f"{' '.join(argv)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


# ---------------------------------------------------------------- certificates and site


def make_certs(d):
    """A throwaway CA and a server certificate for trac.test signed by it (both EC P-256).
    Returns (CA certificate, server certificate, server key) paths."""
    os.makedirs(d)
    p = lambda name: os.path.join(d, name)
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run(["openssl", "genpkey", *ec, "-out", p("ca.key")])
    run(["openssl", "req", "-x509", "-new", "-key", p("ca.key"), "-sha256", "-days", "7",
         "-subj", "/CN=Paddock h2 bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", p("ca.pem")])
    run(["openssl", "genpkey", *ec, "-out", p(f"{HOST}.key")])
    run(["openssl", "req", "-new", "-key", p(f"{HOST}.key"), "-subj", f"/CN={HOST}",
         "-out", p(f"{HOST}.csr")])
    with open(p("server.ext"), "w") as f:
        f.write(f"subjectAltName = DNS:{HOST}\nbasicConstraints = CA:FALSE\n"
                "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n")
    run(["openssl", "x509", "-req", "-in", p(f"{HOST}.csr"), "-CA", p("ca.pem"),
         "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "7", "-sha256",
         "-extfile", p("server.ext"), "-out", p(f"{HOST}.pem")])
    return p("ca.pem"), p(f"{HOST}.pem"), p(f"{HOST}.key")


def make_site(sites, ident):
    """A fresh Trac 1.6 environment sites/demo (trac-admin initenv, SQLite), owned by the
    bench user, as bench/bench.py makes its template."""
    env = os.path.join(sites, SITE)
    os.makedirs(sites)
    run([f"{B.VENV}/bin/trac-admin", env, "initenv", "Demo", "sqlite:db/trac.db"])
    ident.chown(sites)
    return env


# ---------------------------------------------------------------- servers


def paddock_server(plain, tls, sites, crt, key):
    """Paddock's release build: the sites directory (tenants at /trac/<name>), a plain
    listener (HTTP/1.1 and h2c) and a [tls] listener with the trac.test certificate."""
    cfg = os.path.join(WORK, "paddock.toml")
    with open(cfg, "w") as f:
        f.write(f"""# Generated by bench/h2.py
listen = "127.0.0.1:{plain}"
sites = "{sites}"

[tls]
listen = "127.0.0.1:{tls}"

[[tls.certificates]]
names = ["{HOST}"]
cert = "{crt}"
key = "{key}"

[defaults]
processes = 2
threads = 4
virtualenv = "{B.VENV}"
allow_world_readable = true
""")
    run([PADDOCK, "check", "--file-only", cfg])
    return B.Server("paddock", "trac", [PADDOCK, "serve", "--config", cfg],
                    os.path.join(WORK, "logs", "paddock.log"),
                    env=dict(os.environ, PADDOCK_LOG=B.PADDOCK_LOG), as_user=False)


def apache_server(plain, tls, env, crt, key, ident):
    """A private Apache 2.4 (own ServerRoot, PidFile, ErrorLog under target/bench/h2/apache;
    nothing from /etc/apache2): mpm_event, mod_ssl and mod_http2 (h2 by ALPN on the TLS
    virtual host, h2c with prior knowledge on the plain one), Trac in a mod_wsgi daemon
    (processes=2 threads=4) at /trac/demo and Trac's static files by Alias, as in a classic
    Trac deployment (and as bench/bench.py runs it)."""
    d = os.path.join(WORK, "apache")
    os.makedirs(d)
    ident.chown(d)
    user = f"User {B.BENCH_USER}\nGroup {B.BENCH_USER}\n" if ident.root else ""
    mods = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in
                     ("mpm_event", "authz_core", "env", "alias", "mime", "socache_shmcb", "ssl",
                      "http2", "wsgi"))
    dirs = "\n".join(f"<Directory {p}>\n    Require all granted\n</Directory>"
                     for p in (B.APPS, B.TRAC_HTDOCS, f"{env}/htdocs"))
    conf = os.path.join(d, "apache2.conf")
    with open(conf, "w") as f:
        f.write(f"""# Generated by bench/h2.py: a private Apache, nothing shared with /etc/apache2.
ServerRoot "{d}"
DefaultRuntimeDir "{d}"
PidFile "{d}/apache2.pid"
ErrorLog "{d}/error.log"
LogLevel warn
ServerName {HOST}
Listen 127.0.0.1:{plain}
Listen 127.0.0.1:{tls}
{user}{mods}
TypesConfig /etc/mime.types
# Keep-alive as Paddock: no limit on requests per connection.
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
# TLS 1.2 and 1.3 only, as Paddock (rustls); Debian's default cipher list.
SSLProtocol -all +TLSv1.2 +TLSv1.3
SSLSessionCache "shmcb:{d}/ssl_scache(512000)"
WSGISocketPrefix "{d}/wsgi"
WSGIDaemonProcess trac processes=2 threads=4 python-home={B.VENV} python-path={B.APPS} home={d}
WSGIProcessGroup trac
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias /trac/{SITE} {TRAC_SCRIPT}
SetEnv trac.env_path {env}
Alias /trac/{SITE}/chrome/common {B.TRAC_HTDOCS}
Alias /trac/{SITE}/chrome/site {env}/htdocs
{dirs}
<VirtualHost 127.0.0.1:{plain}>
    ServerName {HOST}
    Protocols h2c http/1.1
</VirtualHost>
<VirtualHost 127.0.0.1:{tls}>
    ServerName {HOST}
    Protocols h2 http/1.1
    SSLEngine on
    SSLCertificateFile {crt}
    SSLCertificateKeyFile {key}
</VirtualHost>
""")
    run(["/usr/sbin/apache2", "-t", "-f", conf], cwd=d)
    env_vars = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
                "HOME": d}
    s = B.Server("apache", "trac", ["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"],
                 os.path.join(WORK, "logs", "apache.log"), env=env_vars, cwd=d, as_user=False,
                 extra_log=os.path.join(d, "error.log"))
    s.pidfile = os.path.join(d, "apache2.pid")
    return s


def check_pidfile(s):
    """Apache runs in the foreground: the PID in its PidFile must be the process we started
    (the one Server.stop signals). Waits for the file at most 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(s.pidfile) as f:
                pid = int(f.read().strip() or 0)
            if pid:
                if pid != s.proc.pid:
                    raise B.Failure(f"apache: PidFile says {pid}, we started {s.proc.pid}")
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise B.Failure(f"apache: no PidFile {s.pidfile} within 10 s\n{s.log_tail()}")


def tls_probe(port, ca, path):
    """Two TLS connections to trac.test at 127.0.0.1:port, the certificate verified against
    the bench CA: one offering h2 and http/1.1 (returns the protocol the server picked), one
    offering http/1.1 only, on which GET path is sent. Returns (ALPN, TLS version, status)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as t:
            alpn, version = t.selected_alpn_protocol(), t.version()
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.sock = ctx.wrap_socket(raw, server_hostname=HOST)
    try:
        c.request("GET", path, headers={"Host": f"{HOST}:{port}"})
        r = c.getresponse()
        r.read()
        return alpn, version, r.status
    finally:
        c.close()


# ---------------------------------------------------------------- h2load


def cpu_seconds(pids):
    """utime + stime of the live processes pids (seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def parse_h2load(out):
    """The figures of h2load's summary (nghttp2 1.52's format); missing ones are None."""
    def num(pattern, cast=float):
        m = re.search(pattern, out, re.M)
        return cast(m.group(1)) if m else None
    r = {
        "seconds": num(r"^finished in (\S+),", lambda t: _ms(t) / 1000),
        "rps": num(r"^finished in \S+, ([\d.]+) req/s"),
        "total": num(r"^requests: (\d+) total", int),
        "done": num(r"^requests: .* (\d+) done", int),
        "succeeded": num(r"^requests: .* (\d+) succeeded", int),
        "failed": num(r"^requests: .* (\d+) failed", int),
        "errored": num(r"^requests: .* (\d+) errored", int),
        "timeout": num(r"^requests: .* (\d+) timeout", int),
        "2xx": num(r"^status codes: (\d+) 2xx", int),
        "3xx": num(r"^status codes: .* (\d+) 3xx", int),
        "4xx": num(r"^status codes: .* (\d+) 4xx", int),
        "5xx": num(r"^status codes: .* (\d+) 5xx", int),
        "bytes_total": num(r"^traffic: .*?\((\d+)\) total", int),
        "header_bytes": num(r"^traffic: .*?\((\d+)\) headers", int),
        "header_savings_pct": num(r"headers \(space savings ([\d.]+)%\)"),
        "data_bytes": num(r"^traffic: .*\((\d+)\) data", int),
        "tls_protocol": num(r"^TLS Protocol: (\S+)", str),
        "cipher": num(r"^Cipher: (\S+)", str),
        "key_exchange": num(r"^Server Temp Key: (.+)$", str),
        "alpn": num(r"^Application protocol: (\S+)", str),
    }
    m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        r["request_ms"] = dict(zip(("min", "max", "mean"), map(_ms, m.groups())))
    return r


def _ms(text):
    """h2load's duration ("812us", "12.34ms", "1.02s") in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return None


def h2load(server, ports, variant, urls, n):
    """One h2load run of variant against server; returns its parsed figures, plus the CPU
    seconds of the server's process tree and of h2load during the run."""
    name, listener, opts = variant
    opts = [str(len(urls)) if o == "PAGE" else o for o in opts]
    port = ports[listener]
    if listener == "tls":
        targets = [f"https://{HOST}:{port}{u}" for u in urls]
        opts = opts + [f"--connect-to=127.0.0.1:{port}"]
    else:
        targets = [f"http://127.0.0.1:{port}{u}" for u in urls]
    argv = ["h2load", "-n", str(n), *opts, *targets]
    pids = server.pids()
    cpu0, kids0 = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60 + n / 10)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = f"{e.stdout or ''}{e.stderr or ''}\n(h2load killed after {e.timeout:.0f} s)", -9
    wall = time.monotonic() - t0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse_h2load(out)
    r.update(variant=name, server=server.name, n=n, exit=rc, wall_s=round(wall, 2),
             argv=" ".join(argv[:3 + len(opts)]) + f" <{len(urls)} URLs>",
             server_cpu_s=round(cpu_seconds(pids) - cpu0, 2),
             h2load_cpu_s=round(kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime, 2),
             load1=os.getloadavg()[0], output=out)
    return r


def verdict(r, expect_4xx):
    """'' when the run is sound, else why not: h2load failed, a request failed (h2load counts
    every 4xx as failed: the 4xx of URLs that answer 404 before the run are expected), errored
    or timed out, not every request was done, or no 2xx at all."""
    if r["exit"] != 0 or r["rps"] is None:
        return f"h2load exit {r['exit']}"
    unexpected = r["failed"] - (r["4xx"] if expect_4xx else 0)
    problems = [f"{k} {v}" for k, v in (("failed (not 4xx)", unexpected), ("errored", r["errored"]),
                                        ("timeout", r["timeout"]),
                                        ("not done", r["total"] - r["done"])) if v]
    if not r["2xx"]:
        problems.append("no 2xx")
    return ", ".join(problems)


# ---------------------------------------------------------------- report


def ci_running():
    """Whether a CI run is on the machine: a process running `bash .ci/run ...`. Only the
    command itself counts, not a process whose command line merely mentions it (such as
    another benchmark's `pgrep -f "bash .ci/run"` wait loop, which `pgrep -f` also finds)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and os.path.basename(argv[0]) == b"bash" and argv[1].endswith(b".ci/run"):
            return True
    return False


def wait_for_ci():
    """Wait (polling every 30 s, at most 20 minutes) until no CI run is on the machine.
    Returns a note for the report when one was still running at the end."""
    t0 = time.monotonic()
    while ci_running() and time.monotonic() - t0 < CI_WAIT_S:
        log(f"a CI run is on the machine; waiting (polling every {CI_POLL_S} s)")
        time.sleep(CI_POLL_S)
    if ci_running():
        return f"a CI run was on the machine throughout (waited {CI_WAIT_S // 60} min for it)"
    return ""


def versions():
    """Versions of what is measured and what measures."""
    first = lambda s: s.splitlines()[0] if s else "?"
    rev = B.cmd_out(["git", "-C", B.REPO, "rev-parse", "--short", "HEAD"])
    dirty = B.cmd_out(["git", "-C", B.REPO, "status", "--porcelain", "--untracked-files=no"])
    if dirty:
        files = ", ".join(l.split(maxsplit=1)[-1] for l in dirty.splitlines())
        rev += f" with uncommitted changes to {files}"
    dpkg = lambda pkg: B.cmd_out(["dpkg-query", "-W", "-f=${Version}", pkg])
    return {
        "paddock": f"{first(B.cmd_out([PADDOCK, '--version']))} (release), git {rev}",
        "apache": f"{first(B.cmd_out(['/usr/sbin/apache2', '-v']))}, Debian apache2 "
                  f"{dpkg('apache2')} (mod_ssl and mod_http2 are part of that package)",
        "mod_wsgi": f"libapache2-mod-wsgi-py3 {dpkg('libapache2-mod-wsgi-py3')}",
        "h2load": f"{first(B.cmd_out(['h2load', '--version']))} (nghttp2-client {dpkg('nghttp2-client')})",
        "openssl": first(B.cmd_out(["openssl", "version"])),
        "trac": "Trac " + B.cmd_out([f"{B.VENV}/bin/python", "-c",
                                     "import trac; print(trac.__version__)"]),
        "python": first(B.cmd_out([f"{B.VENV}/bin/python", "-VV"])),
    }


def table(runs, nurls):
    """The markdown table: one row per variant and server; medians over the rounds."""
    out = ["| variant | server | req/s per round | median req/s | page loads/s "
           f"(median / {nurls}) | 2xx / 4xx / 5xx per run | errored, timeout | server CPU "
           "ms/req | CPU cores busy: server + h2load | header bytes/req (saved) |",
           "|---|---|---|---:|---:|---|---|---:|---:|---:|"]
    for variant, _, _ in VARIANTS:
        for server in SERVERS:
            rs = [r for r in runs if r["variant"] == variant and r["server"] == server]
            good = [r for r in rs if r["rps"] is not None and r["done"]]
            if not rs:
                continue
            med = lambda f: statistics.median(map(f, good)) if good else None
            rps = med(lambda r: r["rps"])
            codes = sorted({f"{r['2xx']}/{r['4xx']}/{r['5xx']}" for r in good})
            per_round = ", ".join(f"{r['rps']:.1f}" for r in good) or "-"
            if len(good) < len(rs):
                per_round += f" ({len(rs) - len(good)} runs without figures)"
            out.append(
                f"| {variant} | {server} | {per_round} | {_f(rps)} | {_f(rps / nurls if rps else None)} "
                f"| {', '.join(codes) or '-'} | {sum(r['errored'] for r in good)}, "
                f"{sum(r['timeout'] for r in good)} "
                f"| {_f(med(lambda r: 1000 * r['server_cpu_s'] / r['done']), 2)} "
                f"| {_f(med(lambda r: r['server_cpu_s'] / r['seconds']), 2)} + "
                f"{_f(med(lambda r: r['h2load_cpu_s'] / r['seconds']), 2)} "
                f"| {_f(med(lambda r: r['header_bytes'] / r['done']), 0)} "
                f"({_f(med(lambda r: r['header_savings_pct']))}%) |")
    return out


def _f(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def render(res, args):
    """The run as markdown: what ran, the machine, the versions, the table."""
    m, v = res["machine"], res["versions"]
    out = [f"Run {res['date']} ({res['mode']} mode, `bench/h2.py`): {args.rounds} round(s), "
           f"`-n {args.requests}` per run, one warm-up run of `-n {args.warmup}` (tls-h2) per "
           f"server; {res['nurls']} URLs per page load.", "",
           f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux "
           f"{m['kernel']}, {m['os']}; load average {m['load_at_start']} at the start, "
           f"{res['load_at_end']} at the end (1-minute load after the runs: "
           f"{_f(min(res['load1']))} to {_f(max(res['load1']))})."
           + (f" Note: {res['ci_note']}." if res["ci_note"] else ""), "",
           "Versions: " + "; ".join(v.values()) + ".", "",
           "TLS as negotiated by h2load: " + "; ".join(
               f"{s}: {t}" for s, t in res["tls"].items()) + ".", ""]
    out += table(res["runs"], res["nurls"])
    out.append("")
    if res["failures"]:
        out.append("Failures:")
        out.extend(f"- {f.splitlines()[0]}" for f in res["failures"])
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- main


class H2Bench(B.Tally):
    """One run: set-up, both servers, warm-ups, rounds; the checks it counts."""

    say = staticmethod(log)

    def __init__(self, args):
        super().__init__()
        self.args = args
        self.ident = B.Identity()
        self.runs, self.servers, self.ports, self.expect_4xx = [], {}, {}, {}
        self.urls, self.statuses, self.tls = [], {}, {}

    def setup(self):
        """Fresh target/bench/h2: certificates, the Trac site, both servers started."""
        if os.path.isdir(WORK):
            shutil.rmtree(WORK)
        os.makedirs(os.path.join(WORK, "logs"))
        os.chmod(B.SCRATCH, 0o755)
        os.chmod(WORK, 0o755)
        log("certificates (throwaway CA, trac.test, EC P-256)")
        self.ca, crt, key = make_certs(os.path.join(WORK, "certs"))
        log("Trac environment (trac-admin initenv)")
        env = make_site(os.path.join(WORK, "sites"), self.ident)
        for name in SERVERS:
            ports = {"plain": B.free_port(), "tls": B.free_port()}
            try:
                if name == "paddock":
                    s = paddock_server(ports["plain"], ports["tls"], os.path.dirname(env), crt, key)
                else:
                    s = apache_server(ports["plain"], ports["tls"], env, crt, key, self.ident)
                log(f"{name}: starting (plain 127.0.0.1:{ports['plain']}, TLS {ports['tls']})")
                s.start(self.ident)
                if name == "apache":
                    check_pidfile(s)
                B.wait_200(s, ports["plain"], PAGE, 120)
                alpn, version, status = tls_probe(ports["tls"], self.ca, PAGE)
                if alpn != "h2" or status != 200:
                    raise B.Failure(f"TLS: ALPN {alpn!r} (want h2), HTTP/1.1 GET {status}")
                log(f"{name}: up; TLS {version}, ALPN h2, {PAGE} 200 over TLS")
                self.servers[name], self.ports[name] = s, ports
                self.check(f"{name} start", True)
            except (B.Failure, OSError, ssl.SSLError, http.client.HTTPException,
                    subprocess.SubprocessError) as e:
                self.check(f"{name} start", False, str(e))

    def gather_urls(self):
        """The page and the /chrome/ resources its HTML links (from the first server up), and
        each URL's status on every server (logged and kept in the results). A server where
        some URL answers 4xx before the runs (the fresh site's missing logo) is expected to
        give h2load's runs those 4xx."""
        first = next(iter(self.servers))
        _, body = B.get(self.ports[first]["plain"], PAGE)
        links = B.ChromeLinks(f"/trac/{SITE}")
        links.feed(body.decode("utf-8", "replace"))
        self.urls = [PAGE] + links.links
        self.statuses = {n: [B.get(self.ports[n]["plain"], u)[0] for u in self.urls]
                         for n in self.servers}
        for u, *st in zip(self.urls, *self.statuses.values()):
            log(f"  {u}: " + ", ".join(f"{n} {s}" for n, s in zip(self.statuses, st)))
        for n, st in self.statuses.items():
            self.expect_4xx[n] = any(400 <= s < 500 for s in st)

    def one(self, name, variant, n, label):
        """One h2load run, counted as a check; returns its figures."""
        r = h2load(self.servers[name], self.ports[name], variant, self.urls, n)
        why = verdict(r, self.expect_4xx[name])
        self.check(f"{label} {variant[0]} {name}", not why, f"{why}\n{r['output']}")
        if r.get("tls_protocol"):
            self.tls.setdefault(name, f"{r['tls_protocol']}, {r['cipher']}, "
                                      f"{r['key_exchange']}")
        log(f"{label} {variant[0]:>10} {name:>7}: {_f(r['rps'])} req/s, "
            f"{r['2xx']}/{r['4xx']}/{r['5xx']} 2xx/4xx/5xx, server CPU {r['server_cpu_s']} s, "
            f"h2load CPU {r['h2load_cpu_s']} s, load {r['load1']:.2f}{'; ' + why if why else ''}")
        return r

    def measure(self):
        """The warm-up per server, then the rounds (server order alternating per round)."""
        for name in self.servers:
            self.one(name, VARIANTS[0], self.args.warmup, "warm-up")
        for rnd in range(self.args.rounds):
            order = list(self.servers) if rnd % 2 == 0 else list(self.servers)[::-1]
            for variant in VARIANTS:
                for name in order:
                    if not self.servers[name].alive():
                        self.check(f"round {rnd + 1} {variant[0]} {name}", False, "server exited")
                        continue
                    r = self.one(name, variant, self.args.requests, f"round {rnd + 1}")
                    r["round"] = rnd + 1
                    self.runs.append(r)

    def after(self):
        """Whether each server still answers the page, and the warning and error lines of its
        logs (the last 20), for the results."""
        notes = {}
        for name, s in self.servers.items():
            st = B.get(self.ports[name]["plain"], PAGE)[0] if s.alive() else None
            lines = []
            for path in [s.logfile] + ([s.extra_log] if s.extra_log else []):
                with open(path, errors="replace") as f:
                    lines += [l.rstrip() for l in f if re.search(r"WARN|ERROR|error\]|warn\]", l)]
            notes[name] = {"page_after": st, "log_lines": len(lines), "last": lines[-20:]}
            log(f"{name}: page after the runs: HTTP {st}; {len(lines)} warning/error lines in "
                f"its logs" + (f"; last: {lines[-1]}" if lines else ""))
        return notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="quick check: 1 round, -n 110, a warm-up of 11; asserts no figures")
    ap.add_argument("--rounds", type=int, help="rounds of all variants (default 3; smoke 1)")
    ap.add_argument("--requests", type=int, help="h2load -n per run (default 5500; smoke 110)")
    ap.add_argument("--warmup", type=int, help="h2load -n of each server's warm-up run "
                    "(default 1100; smoke 11)")
    ap.add_argument("--no-ci-wait", action="store_true",
                    help="do not wait for a CI run on the machine to end (full mode)")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.smoke else 3)
    args.requests = args.requests or (110 if args.smoke else 5500)
    args.warmup = args.warmup or (11 if args.smoke else 1100)
    if args.requests < 24 or args.warmup < 4:
        ap.error("h2load needs at least as many requests as connections (24 and 4)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    ci_note = "" if args.smoke or args.no_ci_wait else wait_for_ci()
    if not ci_note and ci_running():
        ci_note = "a CI run was on the machine"
    started = time.monotonic()
    machine = B.machine()
    h = H2Bench(args)
    notes = {}
    try:
        h.setup()
        if h.servers:
            h.gather_urls()
            h.measure()
            notes = h.after()
    except KeyboardInterrupt:
        h.check("run", False, "interrupted")
    except (B.Failure, OSError, http.client.HTTPException, subprocess.SubprocessError) as e:
        h.check("setup", False, str(e))
    finally:
        B.stop_all()

    with open("/proc/loadavg") as f:
        load_end = " ".join(f.read().split()[:3])
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "mode": "smoke" if args.smoke else "full", "args": vars(args), "machine": machine,
           "load_at_end": load_end, "load1": [r["load1"] for r in h.runs] or [0.0],
           "ci_note": ci_note, "versions": versions(), "urls": h.urls, "statuses": h.statuses, "nurls": len(h.urls) or 1,
           "tls": h.tls, "runs": h.runs, "log_notes": notes, "failures": h.failures,
           "seconds": round(time.monotonic() - started)}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    jpath = os.path.join(B.SCRATCH, f"h2-{stamp}.json")
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1)
    print(render(res, args))
    for f in h.failures:
        print(f"FAILED {f}\n", file=sys.stderr)
    print(f"results: {jpath} ({res['seconds']} s)")
    print(f"h2{' smoke' if args.smoke else ''}: {h.passed} passed, {h.failed} failed")
    return 1 if h.failed else 0


if __name__ == "__main__":
    sys.exit(main())
