#!/usr/bin/env bash
# The whole test suite: installs what it needs (Debian packages as root, a virtualenv with
# Trac 1.6), then formatting, lints, unit, property and end-to-end tests, then Trac's own
# functional tests (subset) in a browser against paddock.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/install-deps.sh
export PADDOCK_TEST_VENV=${PADDOCK_TEST_VENV:-$repo/.venv-test}
bash scripts/ensure-venv.sh "$PADDOCK_TEST_VENV"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# No import circle between the files of any crate (docs/architecture.md, "Crates and modules").
python3 scripts/modgraph.py proto/src rules/src sys/src config/src supervise/src cluster/src import/src router/src worker/src tests/src
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
# Every fuzz target for a fixed 20,000 executions, on top of the corpus replay `cargo test`
# ran (docs/fuzzing.md; the full run is scripts/fuzz.sh). Its last line is "fuzz: ... crashes".
bash scripts/fuzz.sh --ci
# Each Criterion micro-benchmark once, in test mode (debug build), so they keep working.
cargo test --workspace --bench '*'
# The benchmark suite in smoke mode, to keep it working: every server starts and answers 200;
# no time is asserted (docs/benchmarks.md). Its last line is "bench smoke: N passed, N failed".
bash bench/run.sh --smoke
# A 2-minute soak: 50 tenants under mixed load while workers and zygotes are killed, the router
# reloaded, sites, signups and slow clients come and go; then no bad answer, no leaked
# process, fd, socket or cgroup, flat RSS (docs/reliability.md; the full run is 30 minutes:
# scripts/soak.sh). Its last line is "soak: PASS ..." or "soak: FAIL ...".
bash scripts/soak.sh --ci
# Last: Trac 1.6's own functional suite, 72 of its 201 tests in headless Firefox, against
# `paddock serve` hosting one Trac at / with Basic auth on /login (docs/trac-functional.md).
# First use installs Firefox, geckodriver and Trac's sources (about 3 minutes). Fails the run
# if any test fails; its last line is "N passed, N failed, N skipped".
bash scripts/trac-functional.sh subset
# The Debian package: built with cargo-deb (installed on first use), installed into this
# machine with dpkg -i, the installed configuration checked by the installed binary and the
# unit by systemd-analyze (docs/operations.md). Its last line is "package: installed and checked".
bash scripts/package.sh --install
