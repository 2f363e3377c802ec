#!/usr/bin/env bash
# Build Paddock and serve two demo Trac 1.6 sites at http://127.0.0.1:8080/trac/
# (PADDOCK_LISTEN=ADDR to change the address). Safe to run again: it reuses what exists.
#
# As root, each site gets its own system user (paddock-demo-1, paddock-demo-2) and its pool
# runs as that user, the way Paddock is meant to run; otherwise everything runs as you.
#
# What it installs: Debian's Python 3.11 packages it lacks (python3.11-dev, -venv, pip,
# locales; as root, named before apt-get runs), a virtualenv with Trac 1.6 from PyPI in the
# demo directory, and the two release binaries there. Nothing for the tests (no browser).
# The build honours CARGO_TARGET_DIR.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
listen=${PADDOCK_LISTEN:-127.0.0.1:8080}
cd "$repo"

bash scripts/install-deps.sh --runtime
cargo build --release -p paddock-router -p paddock-worker
target=${CARGO_TARGET_DIR:-$repo/target}

if [[ $(id -u) -eq 0 ]]; then
  demo=/var/lib/paddock-demo
else
  demo=$repo/.paddock-demo
fi
mkdir -p "$demo/sites" "$demo/bin"
echo "demo: binaries, a Trac 1.6 virtualenv and two sites in $demo"
# Copies the tenant users can reach even when the checkout is in a private home directory.
install -m 0755 "$target/release/paddock" "$target/release/paddock-worker" "$demo/bin/"
bash scripts/ensure-venv.sh "$demo/venv"
chmod -R a+rX "$demo/venv" "$demo/bin"

for n in 1 2; do
  site=$demo/sites/demo-$n
  if [[ ! -f $site/.demo-ready ]]; then
    rm -rf "$site"
    "$demo/venv/bin/trac-admin" "$site" initenv "Demo project $n" sqlite:db/trac.db >/dev/null
    page=$(mktemp)
    cat >"$page" <<WIKI
= Demo project $n =
This Trac site is served by Paddock: its own pool of worker processes, started on the
first request, running as its own user.

 * [/timeline Timeline]
 * [wiki:TracGuide The Trac guide]
WIKI
    "$demo/venv/bin/trac-admin" "$site" wiki import WikiStart "$page" >/dev/null
    rm -f "$page"
    touch "$site/.demo-ready"
  fi
  if [[ $(id -u) -eq 0 ]]; then
    user=paddock-demo-$n
    id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    chown -R "$user:" "$site"
    # Private: other site users must not reach its database (Paddock refuses it otherwise).
    chmod 0750 "$site"
  fi
done

echo "Paddock: serving http://$listen/trac/ (demo-1, demo-2); Ctrl-C stops it"
exec "$demo/bin/paddock" serve --sites "$demo/sites" --virtualenv "$demo/venv" --listen "$listen"
