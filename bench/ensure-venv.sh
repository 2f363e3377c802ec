#!/usr/bin/env bash
# Create (once) the benchmark virtualenv: the test virtualenv's recipe (Debian's
# /usr/bin/python3.11, the interpreter both paddock-worker and Debian's mod_wsgi embed, and
# Trac 1.6) plus the peer servers, so every server runs the same Python and the same Trac.
# Usage: bench/ensure-venv.sh DIR.
set -euo pipefail
exec bash "$(dirname "$0")/../scripts/ensure-venv.sh" "${1:?usage: ensure-venv.sh DIR}" \
  gunicorn uwsgi granian
