#!/usr/bin/env bash
# Create (once) the benchmark virtualenv: Trac 1.6 plus the peer servers (gunicorn, uWSGI,
# granian), made with Debian's /usr/bin/python3.11, the interpreter both paddock-worker and
# Debian's mod_wsgi embed, so every server runs the same Python and the same Trac.
# Usage: bench/ensure-venv.sh DIR. Idempotent and safe to run concurrently (flock), as
# scripts/ensure-venv.sh.
set -euo pipefail
venv=${1:?usage: ensure-venv.sh DIR}
py=/usr/bin/python3.11
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ -f $venv/.bench-ready ]]; then
  exit 0
fi
if [[ ! -x $py ]] || ! $py -c 'import ensurepip, sysconfig' 2>/dev/null; then
  echo "bench/ensure-venv: $py with venv support is missing; run scripts/install-deps.sh (needs root)" >&2
  exit 1
fi
rm -rf "$venv"
$py -m venv "$venv"
# uWSGI has no wheels: pip compiles it against python3.11-dev (about a minute; with `wheel`
# installed first, pip caches the built wheel, so a re-created virtualenv does not compile again).
"$venv/bin/pip" install --quiet --disable-pip-version-check wheel
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  'Trac==1.6' 'Jinja2>=2.9.3' 'Babel' gunicorn uwsgi granian
"$venv/bin/python" -c 'import trac; assert trac.__version__.startswith("1.6"), trac.__version__'
touch "$venv/.bench-ready"
