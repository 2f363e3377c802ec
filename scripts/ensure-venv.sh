#!/usr/bin/env bash
# Create (once) a virtualenv with Trac 1.6 made with Debian's Python 3.11, the interpreter
# paddock-worker embeds. Usage: scripts/ensure-venv.sh DIR. Idempotent and safe to run
# concurrently (flock).
set -euo pipefail
venv=${1:?usage: ensure-venv.sh DIR}
py=/usr/bin/python3.11
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ -f $venv/.paddock-ready ]]; then
  exit 0
fi
if [[ ! -x $py ]] || ! $py -c 'import ensurepip, sysconfig' 2>/dev/null; then
  echo "ensure-venv: $py with venv support is missing; run scripts/install-deps.sh (needs root)" >&2
  exit 1
fi
rm -rf "$venv"
$py -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'Trac==1.6' 'Jinja2>=2.9.3' 'Babel'
"$venv/bin/python" -c 'import trac; assert trac.__version__.startswith("1.6"), trac.__version__'
touch "$venv/.paddock-ready"
