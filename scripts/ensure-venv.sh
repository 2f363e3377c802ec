#!/usr/bin/env bash
# Create (once) a virtualenv with Trac 1.6 made with Debian's Python 3.11, the interpreter
# paddock-worker (and Debian's mod_wsgi) embeds. Usage: scripts/ensure-venv.sh DIR [PACKAGE...]
# (extra packages, e.g. the benchmark's peer servers). Idempotent and safe to run concurrently
# (flock).
set -euo pipefail
venv=${1:?usage: ensure-venv.sh DIR [PACKAGE...]}
shift
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
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
if (($#)); then
  # Extra packages may have no wheels (uWSGI is compiled against python3.11-dev, about a
  # minute); with `wheel` installed first pip caches what it built for the next virtualenv.
  "${pip[@]}" wheel
fi
"${pip[@]}" 'Trac==1.6' 'Jinja2>=2.9.3' 'Babel' "$@"
"$venv/bin/python" -c 'import trac; assert trac.__version__.startswith("1.6"), trac.__version__'
touch "$venv/.paddock-ready"
