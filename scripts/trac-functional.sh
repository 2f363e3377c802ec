#!/usr/bin/env bash
# Trac 1.6's own functional test suite (headless Firefox) against `paddock serve` hosting one
# Trac environment at / with HTTP Basic auth on /login. See docs/trac-functional.md.
#
#   scripts/trac-functional.sh [subset|full|MODULE...]      (default: subset, 72 tests)
#
# The harness (run_against.py, setup.sh) lives outside the repo, in ../shared/trac-functional
# (override: TRAC_FUNCTIONAL_HARNESS). Its work folder is TRAC_FUNCTIONAL_HOME (default
# <repo>/.trac-functional): Firefox driver, Trac 1.6 sources, a virtualenv, and the results
# (results/paddock.json, results/paddock/testenv/testing.log, page dumps under
# results/paddock/testenv/trac/log/). The first run installs all that (needs root for
# apt-get and the package registries, about 3-5 minutes); later runs reuse it.
#
# Other knobs: TRAC_FUNCTIONAL_PROFILE=debug|release (cargo profile of paddock, default debug:
# scripts/test.sh has just built it), TRAC_FUNCTIONAL_CONFIG (config template, default
# deploy/trac-functional/paddock.toml.in), TRAC_FUNCTIONAL_TIMEOUT (whole run, default 20m for
# subset, 60m otherwise).
#
# Exit status: 0 only if every test passed (skips allowed). The last line printed is the
# runner's "N passed, N failed, N skipped".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${TRAC_FUNCTIONAL_HOME:-$repo/.trac-functional}
mkdir -p "$work"
W=$(cd "$work" && pwd)
harness_dir=${TRAC_FUNCTIONAL_HARNESS:-$repo/../shared/trac-functional}
template=${TRAC_FUNCTIONAL_CONFIG:-$repo/deploy/trac-functional/paddock.toml.in}
profile=${TRAC_FUNCTIONAL_PROFILE:-debug}
cd "$repo"

say() { echo "trac-functional: $*" >&2; }

if [[ ! -f $harness_dir/run_against.py || ! -f $harness_dir/setup.sh ]]; then
  say "no run_against.py/setup.sh in $harness_dir (set TRAC_FUNCTIONAL_HARNESS)"
  exit 1
fi
harness=$(cd "$harness_dir" && pwd)
template=$(cd "$(dirname "$template")" && pwd)/$(basename "$template")
# These paths end up in a str.format() template and in TOML literal strings.
for p in "$W" "$repo" "$template"; do
  if [[ $p == *[\{\}\'\\\|\&\ ]* ]]; then
    say "path $p contains one of { } ' \\ | & or a space; use another location"
    exit 1
  fi
done
case $profile in
  debug) cargo_profile=() ;;
  release) cargo_profile=(--release) ;;
  *) say "TRAC_FUNCTIONAL_PROFILE must be debug or release, not $profile"; exit 1 ;;
esac

# --- 1. the harness's dependencies (idempotent; skipped when already done) ---------------------
# paddock-worker embeds Debian's libpython3.11, and the tenant's virtualenv is the harness's own
# (Trac under test is installed there), so that venv must be made with /usr/bin/python3.11.
# setup.sh makes it with whatever `python3` is first on PATH (a pyenv build on some machines)
# unless .venv already exists: create it first.
debian_venv() {
  [[ -x $1/bin/python ]] && grep -qx 'home = /usr/bin' "$1/pyvenv.cfg" 2>/dev/null &&
    grep -Eq '^version(_info)? = 3\.11\.' "$1/pyvenv.cfg"
}
stamp=$(cat "$harness/setup.sh" "$harness/requirements.txt" | sha256sum | cut -c1-16)
installed() {
  [[ -x $W/.tools/bin/geckodriver && -f $W/Trac-1.6/trac/tests/functional/testenv.py ]] &&
    debian_venv "$W/.venv" && command -v firefox-esr >/dev/null &&
    "$W/.venv/bin/python" -c 'import trac, selenium, tidylib, passlib' 2>/dev/null
}
ready() { [[ -f $W/.paddock-ready && $(<"$W/.paddock-ready") == "$stamp" ]] && installed; }
exec 9>"$W/.lock"
flock 9
if ! ready; then
  say "setting up $W (Firefox, geckodriver, Trac 1.6 sources, virtualenv)"
  t0=$SECONDS
  if [[ ! -x /usr/bin/python3.11 ]]; then
    say "/usr/bin/python3.11 is missing; run scripts/install-deps.sh as root"
    exit 1
  fi
  if [[ -e $W/.venv ]] && ! debian_venv "$W/.venv"; then
    say "$W/.venv is not a Debian /usr/bin/python3.11 virtualenv: recreating it"
    rm -rf "$W/.venv"
  fi
  [[ -d $W/.venv ]] || /usr/bin/python3.11 -m venv "$W/.venv"
  rm -f "$W/.paddock-ready"
  # setup.sh ends with `geckodriver --version | head -1`, which can fail under pipefail when
  # head exits first (geckodriver panics on EPIPE): judge by what is installed, not its status.
  TRAC_FUNCTIONAL_HOME=$W "$harness/setup.sh" || {
    rc=$?
    installed || { say "setup.sh failed (exit $rc)"; exit "$rc"; }
    say "setup.sh exited $rc but everything it installs is in place; going on"
  }
  debian_venv "$W/.venv" || { say "setup left a non-Debian $W/.venv"; exit 1; }
  echo "$stamp" >"$W/.paddock-ready"
  say "setup took $((SECONDS - t0)) s"
fi

# --- 2. paddock ---------------------------------------------------------------------------------
cargo build "${cargo_profile[@]}" -p paddock-router -p paddock-worker
target=$(cd "${CARGO_TARGET_DIR:-$repo/target}" && pwd)/$profile
[[ -x $target/paddock && -x $target/paddock-worker ]] || { say "no paddock/paddock-worker in $target"; exit 1; }
# Run a snapshot: the suite restarts the server, and a cargo build in target/ meanwhile (another
# checkout's tests, an editor) must not swap binaries under a run. paddock finds paddock-worker
# next to itself.
rm -rf "$W/bin"
mkdir -p "$W/bin"
cp "$target/paddock" "$target/paddock-worker" "$W/bin/"
paddock=$W/bin/paddock
[[ $paddock != *[\{\}\'\\\|\&\ ]* ]] || { say "unusable path $paddock"; exit 1; }

# --- 3. the suite ------------------------------------------------------------------------------
# run_against.py fills in {env} {port} {htpasswd} {dir} {python} (already shell-quoted) and runs
# this in the foreground; stop() sends SIGTERM to its process group. The config is written into
# {dir} (the run's scratch folder, parent of the environment) and checked first, so a config
# error shows up at the top of results/paddock/testenv/testing.log.
start="echo \$\$ > {dir}/paddock.pid; venv=\$(dirname \"\$(dirname {python})\");
if ! grep -qx 'home = /usr/bin' \"\$venv/pyvenv.cfg\"; then
  echo \"trac-functional: \$venv is not a Debian /usr/bin/python3.11 virtualenv\" >&2; exit 78;
fi;
sed -e 's|@PORT@|'{port}'|g' -e 's|@ENV@|'{env}'|g' -e 's|@HTPASSWD@|'{htpasswd}'|g' \
    -e \"s|@VENV@|\$venv|g\" $template > {dir}/paddock.toml &&
$paddock check {dir}/paddock.toml &&
exec $paddock serve --config {dir}/paddock.toml"

tests=("$@")
((${#tests[@]})) || tests=(subset)
timeout=${TRAC_FUNCTIONAL_TIMEOUT:-$([[ ${tests[*]} == subset ]] && echo 20m || echo 60m)}
rm -rf "$W/results/paddock" "$W/results/paddock.json"
mkdir -p "$W/results"
# The runner stops the server itself; if it is killed (timeout, ^C) the server, which runs in
# its own session, would outlive it: stop the process group whose leader the start command
# recorded, if that is still a paddock.
stop_leftover() {
  local pidfile=$W/results/paddock/paddock.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == paddock ]] || return 0
  say "paddock (pid $pid) outlived the runner: stopping its process group"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 -- "-$pid" 2>/dev/null || return 0; sleep 1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
trap stop_leftover EXIT
say "running ${tests[*]} against $paddock (built from $target)"
t0=$SECONDS
set +e
# A stuck browser must not hang CI: SIGTERM (the runner stops the server and writes its
# results), SIGKILL a minute later.
PYTHONUNBUFFERED=1 TRAC_FUNCTIONAL_HOME=$W timeout -k 60 "$timeout" \
  "$W/.venv/bin/python" "$harness/run_against.py" --name paddock --start "$start" \
  "${tests[@]}" 2>&1 | tee "$W/results/paddock.out"
rc=${PIPESTATUS[0]}
set -e
summary=$(tail -n 1 "$W/results/paddock.out")
say "${tests[*]}: $((SECONDS - t0)) s, exit $rc"
if ((rc == 124 || rc == 137)); then
  say "timed out after $timeout (TRAC_FUNCTIONAL_TIMEOUT)"
fi
if [[ ! $summary =~ ^[0-9]+\ passed,\ [0-9]+\ failed,\ [0-9]+\ skipped$ ]]; then
  summary="trac-functional: no result line from the runner (exit $rc); see $W/results/paddock.out"
  ((rc != 0)) || rc=1
fi
if ((rc != 0)); then
  say "failed tests (results/paddock.json):"
  "$W/.venv/bin/python" - "$W/results/paddock.json" <<'EOF' >&2 || true
import json, sys
r = json.load(open(sys.argv[1]))
if r.get('fixture_error'):
    print('  fixture setup failed, no test ran')
for t in r['results']:
    if t['outcome'] in ('fail', 'error'):
        print('  %-5s %s' % (t['outcome'], t['id']))
EOF
  say "server log: $W/results/paddock/testenv/testing.log"
  say "page dumps and screenshots: $W/results/paddock/testenv/trac/log/"
  if [[ -f $W/results/paddock/testenv/testing.log ]]; then
    say "last lines of testing.log:"
    tail -n 30 "$W/results/paddock/testenv/testing.log" >&2
  fi
fi
# The runner's own summary, last: "N passed, N failed, N skipped".
echo "$summary"
exit "$rc"
