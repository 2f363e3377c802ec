#!/usr/bin/env bash
# Build Paddock's Debian package with cargo-deb (installed first if missing):
# target/debian/paddock_<version>_amd64.deb with both binaries, the systemd unit, the default
# /etc/paddock/paddock.toml (a conffile) and the documentation.
#
#   scripts/package.sh            build it
#   scripts/package.sh --install  build it, install it into this machine (dpkg -i, as root),
#                                 then check the installed configuration with the installed
#                                 binary and the installed unit with systemd-analyze (CI)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
# cargo-deb builds the package's own crate (paddock-router); the worker is an asset of it.
cargo build --release -p paddock-worker
cargo deb -p paddock-router
deb=$(ls -t target/debian/paddock_*.deb | head -1)
echo "package: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
dpkg-deb --contents "$deb" | awk '{print $6}'

if [[ "${1:-}" == "--install" ]]; then
    dpkg -i "$deb"
    test -x /usr/bin/paddock && test -x /usr/bin/paddock-worker
    test -f /usr/lib/systemd/system/paddock.service
    # Enabled by the installation (started once configured).
    test -L /etc/systemd/system/multi-user.target.wants/paddock.service
    # The installed configuration, by the installed binary (its sites directory may not exist
    # yet: a warning, not an error).
    /usr/bin/paddock check /etc/paddock/paddock.toml
    systemd-analyze verify /usr/lib/systemd/system/paddock.service
    # The unit's hardening: exposure at most 4.0 (the threshold is in tenths; it scores 3.5).
    systemd-analyze security --offline=yes --threshold=40 /usr/lib/systemd/system/paddock.service \
        | tail -n 1
    echo "package: installed and checked"
fi
