#!/usr/bin/env python3
"""Cold start and memory per Trac tenant, with and without the zygote (docs/zygote.md).

    scripts/zygote-bench.py --paddock target/release/paddock --venv .venv-test \
        --tenants 10 --preload default|off|trac.web.main[,module...]

Makes N Trac environments in a temporary directory, starts `paddock serve` on a free loopback
port (as root with --allow-root: the environments are root-owned), then for tenant 1..N in turn
times its first request (GET /trac/tI/wiki/WikiStart until the 200) and, after tenants 1 and 5,
sums the PSS (/proc/PID/smaps_rollup) of all of paddock's worker processes, zygote included,
once every active tenant has served 3 requests. Prints one line per figure. Only processes it
started are stopped (by pid).
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def descendants(pid):
    out = []
    for c in children(pid):
        out.append(c)
        out.extend(descendants(c))
    return out


def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ms(pid):
    """User + system CPU time of `pid` so far (load-independent, unlike wall time)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()
        return r.status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paddock", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--preload", default="default")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="zybench-")
    os.chmod(work, 0o755)
    sites = os.path.join(work, "sites")
    os.mkdir(sites)
    for i in range(1, a.tenants + 1):
        subprocess.run([os.path.join(a.venv, "bin/trac-admin"), os.path.join(sites, f"t{i}"),
                        "initenv", f"t{i}", "sqlite:db/trac.db"],
                       check=True, stdout=subprocess.DEVNULL)
    cfg = [f'sites = "{sites}"', "index = false", "[defaults]",
           f'virtualenv = "{os.path.abspath(a.venv)}"', "processes = 1", 'watch_files = []']
    if a.preload == "off":
        cfg.append("preload = []")
    elif a.preload != "default":
        cfg.append("preload = " + json.dumps(a.preload.split(",")))
    with open(os.path.join(work, "paddock.toml"), "w") as f:
        f.write("\n".join(cfg) + "\n")
    port = free_port()
    log = open(os.path.join(work, "paddock.log"), "w")
    args = [a.paddock, "serve", "--config", os.path.join(work, "paddock.toml"),
            "--listen", f"127.0.0.1:{port}"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/trac"
        cold = []
        cpu = []
        seen = set()
        for i in range(1, a.tenants + 1):
            t0 = time.perf_counter()
            status = get(f"{base}/t{i}/wiki/WikiStart")
            cold.append((time.perf_counter() - t0) * 1000)
            assert status == 200, status
            # CPU of the tenant's new worker (processes = 1), zygote excluded.
            zygotes = [c for c in children(p.pid)
                       if open(f"/proc/{c}/cmdline", "rb").read().split(b"\0")[1:2] == [b"zygote"]]
            new = [q for q in descendants(p.pid) if q not in seen and q not in zygotes]
            seen.update(descendants(p.pid))
            cpu.append(sum(cpu_ms(q) for q in new))
            if i in (1, 5):
                for j in range(1, i + 1):
                    for _ in range(3):
                        get(f"{base}/t{j}/wiki/WikiStart")
                time.sleep(1)
                procs = descendants(p.pid)
                total = sum(pss_kib(q) for q in procs)
                print(f"pss_total_k{i}_mib {total / 1024:.1f} ({len(procs)} processes)")
                if i == 1:
                    pss1 = total
                else:
                    print(f"pss_per_additional_tenant_mib {(total - pss1) / 1024 / (i - 1):.1f}")
        print("cold_ms " + " ".join(f"{c:.0f}" for c in cold))
        print(f"cold_first_ms {cold[0]:.0f}")
        rest = cold[1:]
        print(f"cold_p50_ms_tenants_2_to_{a.tenants} {statistics.median(rest):.0f}")
        print(f"cold_p50_ms_all {statistics.median(cold):.0f}")
        print("worker_cpu_ms_at_first_200 " + " ".join(f"{c:.0f}" for c in cpu))
        print(f"worker_cpu_p50_ms_tenants_2_to_{a.tenants} {statistics.median(cpu[1:]):.0f}")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
