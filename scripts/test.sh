#!/usr/bin/env bash
# The whole test suite: installs what it needs (Debian packages as root, a virtualenv with
# Trac 1.6), then formatting, lints, unit, property and end-to-end tests.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/install-deps.sh
export PADDOCK_TEST_VENV=${PADDOCK_TEST_VENV:-$repo/.venv-test}
bash scripts/ensure-venv.sh "$PADDOCK_TEST_VENV"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
