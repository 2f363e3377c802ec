#!/usr/bin/env bash
# Density benchmark (issue 14 part 4): many Trac sites, most of them quiet, Zipf-like traffic
# over them for a fixed time; Paddock (uncapped and with a max_workers_total cap) against
# Apache + mod_wsgi with one WSGIDaemonProcess per site and uWSGI's Emperor with one vassal
# per site. See the "Density" section of docs/benchmarks.md.
#
#   bench/density.sh [--smoke] [--sites N] [--duration S] [--clients C] [--cap N|quarter|default]...
#                    [--only NAMES] [--no-doc]
#
# Installs what it needs as bench/run.sh does (Debian packages as root, the benchmark
# virtualenv with Trac and uWSGI made with Debian's python3.11), builds this checkout's
# paddock in release mode, then hands over to bench/density.py (standard library only).
# Measured runs should hold the machine's benchmark lock:
#   flock /tmp/paddock-bench.lock bench/density.sh ...
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scratch=${PADDOCK_BENCH_DIR:-$repo/target/bench}

# Debian's CPython 3.11 with headers and venv (also what paddock-worker links).
bash scripts/install-deps.sh --runtime
bash bench/debs.sh density apache2 libapache2-mod-wsgi-py3 wrk build-essential
# The benchmark runs its own private Apache and never touches the system's apache2.service.

bash bench/ensure-venv.sh "$scratch/venv"
# Density figures need the release build (also in smoke mode: a debug router with hundreds
# of pools would measure the build, not the design).
cargo build --release --bins
export PADDOCK_BENCH_PROFILE=release
# exec: density.py gets our signals, and its own clean-up stops every server it started.
exec /usr/bin/python3.11 bench/density.py "$@"
