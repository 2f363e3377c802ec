#!/usr/bin/env bash
# Install the Debian packages a benchmark needs, if any is missing.
#   bash bench/debs.sh WHO PACKAGE...
# WHO names the benchmark in the message when a package is missing and this is not root
# (exit 1). Another job may hold dpkg's lock (CI installs the same packages): apt-get waits
# for it, at most 10 minutes.
set -euo pipefail
who=${1:?usage: debs.sh WHO PACKAGE...}
shift
need=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
((${#need[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "$who: missing Debian packages: ${need[*]} (run as root: apt-get install ${need[*]})" >&2
  exit 1
fi
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${need[@]}" >/dev/null
