#!/usr/bin/env bash
# Create (once) a virtualenv with Trac 1.6 made with Debian's Python 3.11, the interpreter
# paddock-worker (and Debian's mod_wsgi) embeds, with psycopg2 for Trac sites on PostgreSQL
# (tests/tests/postgres.rs; psycopg2-binary: a manylinux wheel for cp311, no build needed).
# Usage: scripts/ensure-venv.sh DIR [PACKAGE...] (extra packages, e.g. the benchmark's peer
# servers). Idempotent and safe to run concurrently
# (flock).
set -euo pipefail
venv=${1:?usage: ensure-venv.sh DIR [PACKAGE...]}
shift
py=/usr/bin/python3.11
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
# What the marker records: a virtualenv made by an earlier version of this list gets the
# packages added since (pip install, no rebuild).
base=('Trac==1.6' 'Jinja2>=2.9.3' 'Babel' 'psycopg2-binary==2.9.10')
want="${base[*]} $*"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
if [[ -f $venv/.paddock-ready ]]; then
  if [[ $(cat "$venv/.paddock-ready") == "$want" ]]; then
    exit 0
  fi
  if [[ -x $venv/bin/pip ]]; then
    "${pip[@]}" "${base[@]}" "$@"
    echo "$want" >"$venv/.paddock-ready"
    exit 0
  fi
fi
if [[ ! -x $py ]] || ! $py -c 'import ensurepip, sysconfig' 2>/dev/null; then
  echo "ensure-venv: $py with venv support is missing; run scripts/install-deps.sh (needs root)" >&2
  exit 1
fi
rm -rf "$venv"
$py -m venv "$venv"
if (($#)); then
  # Extra packages may have no wheels (uWSGI is compiled against python3.11-dev, about a
  # minute); with `wheel` installed first pip caches what it built for the next virtualenv.
  "${pip[@]}" wheel
fi
"${pip[@]}" "${base[@]}" "$@"
"$venv/bin/python" -c 'import trac, psycopg2; assert trac.__version__.startswith("1.6"), trac.__version__'
echo "$want" >"$venv/.paddock-ready"
