#!/usr/bin/env bash
# Side-by-side benchmarks: Paddock, Apache + mod_wsgi (daemon mode), gunicorn, uWSGI and
# granian on 127.0.0.1, hello-world and Trac 1.6, driven by wrk. See docs/benchmarks.md.
#
#   bench/run.sh [--smoke] [--duration S] [--warmup S] [--processes P] [--threads T]
#                [--only NAMES] [--no-doc]
#
# Installs what it needs (Debian packages as root, a virtualenv with Trac and the peer servers
# made with Debian's python3.11), builds this checkout's paddock in release mode, then hands
# over to bench/bench.py (standard library only). The full mode rewrites the generated section
# of docs/benchmarks.md; --smoke is CI's: short runs, only failing when a server does not start
# or does not answer 200.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scratch=${PADDOCK_BENCH_DIR:-$repo/target/bench}

# Debian's CPython 3.11 with headers and venv (also what paddock-worker links).
bash scripts/install-deps.sh
bash bench/debs.sh bench apache2 libapache2-mod-wsgi-py3 wrk build-essential
# Debian enables apache2.service on install; the benchmark runs its own private Apache and
# never touches that one (nor port 80).

bash bench/ensure-venv.sh "$scratch/venv"
# The smoke mode only checks that the suite works: it uses the debug build (which
# scripts/test.sh has just made) rather than spending minutes on a release build.
profile=release
for arg in "$@"; do
  if [[ $arg == --smoke ]]; then profile=debug; fi
done
if [[ $profile == release ]]; then
  cargo build --release --bins
else
  cargo build --bins
fi
export PADDOCK_BENCH_PROFILE=$profile
# exec: bench.py gets our signals, and its own clean-up stops every server it started.
exec /usr/bin/python3.11 bench/bench.py "$@"
