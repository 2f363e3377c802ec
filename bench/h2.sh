#!/usr/bin/env bash
# HTTP/2 and TLS benchmark (issue 14 part 5): one Trac page load over TLS + HTTP/2 (ALPN),
# TLS + HTTP/1.1, h2c and plain HTTP/1.1, driven by h2load, against Paddock and Apache 2.4
# with mod_ssl, mod_http2 and mod_wsgi (daemon mode), in interleaved rounds. See the section
# "HTTP/2 and TLS" of docs/benchmarks.md.
#
#   flock /tmp/paddock-bench.lock bench/h2.sh [--smoke] [--rounds R] [--requests N] [--warmup N]
#                                             [--no-ci-wait]
#
# Installs what it needs as bench/run.sh does (Debian packages as root: Apache, mod_wsgi,
# h2load, openssl; the benchmark virtualenv with Trac made with Debian's python3.11), builds
# this checkout's paddock in release mode (the smoke mode too), then hands over to
# bench/h2.py (standard library only). Run it under the machine's benchmark lock (above) so
# that it never overlaps another benchmark.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scratch=${PADDOCK_BENCH_DIR:-$repo/target/bench}

# Debian's CPython 3.11 with headers and venv (also what paddock-worker links).
bash scripts/install-deps.sh --runtime
# mod_ssl and mod_http2 are part of Debian's apache2 package; h2load is in nghttp2-client;
# build-essential: the benchmark virtualenv compiles uWSGI (bench/ensure-venv.sh).
bash bench/debs.sh h2 apache2 libapache2-mod-wsgi-py3 nghttp2-client openssl build-essential
# The benchmark runs its own private Apache and never touches the system's apache2.service.

bash bench/ensure-venv.sh "$scratch/venv"
# Throughput figures need the release build; the smoke mode uses it too (it is what is run).
cargo build --release --bins
# exec: h2.py gets our signals, and its own clean-up stops every server it started.
exec /usr/bin/python3.11 bench/h2.py "$@"
