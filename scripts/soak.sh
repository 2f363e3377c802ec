#!/usr/bin/env bash
# Soak under faults: paddock with 50 tenants (test apps and Trac sites) under mixed load while
# workers and zygotes are killed, the router reloaded, sites added/removed, tenants signed up
# and deleted, and slow clients cut off; then the invariants (no bad responses, no leaked
# processes, fds, sockets or cgroups, flat RSS, every tenant serving) are checked.
#
# Usage (as root): scripts/soak.sh [--ci | --secs N] [--seed N]
#   default 30 minutes; --ci: 2 minutes; --secs N: N seconds. Uses
#   ${PADDOCK_TEST_VENV:-<repo>/.venv-test} (made with scripts/ensure-venv.sh if missing).
#   Prints a summary and a last line `soak: PASS ...` or `soak: FAIL ...`; exits non-zero on FAIL.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
secs=1800
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --ci) secs=120 ;;
    --secs) secs=${2:?--secs needs a number}; shift ;;
    --seed) extra+=(--seed "${2:?--seed needs a number}"); shift ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $(id -u) -ne 0 ]]; then
  echo "soak.sh: needs root (tenant users, signals to tenant processes)" >&2
  exit 2
fi
venv=${PADDOCK_TEST_VENV:-$repo/.venv-test}
[[ -f $venv/.paddock-ready ]] || bash "$repo/scripts/ensure-venv.sh" "$venv"
cd "$repo"
cargo build -q -p paddock-router -p paddock-worker -p paddock-e2e --bin paddock --bin paddock-worker --bin soak
target=${CARGO_TARGET_DIR:-$repo/target}/debug
exec "$target/soak" --secs "$secs" --venv "$venv" --bin-dir "$target" --repo "$repo" "${extra[@]}"
