#!/usr/bin/env bash
# Debian packages Paddock needs to build and test: Debian's CPython 3.11 with headers (pyo3
# links its libpython3.11.so), protoc (etcd-client, in paddock-cluster, compiles etcd's gRPC
# definitions when it is built), venv/pip (tenant virtualenvs) and locales (the tests build the
# locales an example config names with localedef), Prometheus (tests/tests/metrics.rs) and
# PostgreSQL's server (tests/tests/postgres.rs runs its own cluster in a temp directory on a
# free port; the Debian cluster the package may start is not used) and etcd's server
# (cluster/tests/ start their own etcd on free loopback ports). Needs root; skips what is
# there.
#   install-deps.sh            everything the tests need (also prometheus, postgresql, a browser)
#   install-deps.sh --runtime  only what building and serving need (deploy/demo.sh)
set -euo pipefail
runtime=(python3.11 python3.11-dev python3.11-venv python3-pip libpython3.11 locales protobuf-compiler)
if [[ ${1:-} == --runtime ]]; then
  need=()
  for pkg in "${runtime[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
  done
  if ((${#need[@]})); then
    echo "install-deps: installing Debian packages: ${need[*]}"
    [[ $(id -u) -eq 0 ]] || { echo "install-deps: run as root: apt-get install ${need[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  exit 0
fi
need=()
for pkg in "${runtime[@]}" prometheus postgresql etcd-server; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${need[*]} (run as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Headless Chromium and its WebDriver, for the signup page's browser test
# (tests/tests/signup_browser.rs). Without recommends: no desktop services come along.
browser=()
for pkg in chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || browser+=("$pkg")
done
if ((${#browser[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${browser[*]} (run as root: apt-get install --no-install-recommends ${browser[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${browser[@]}" >/dev/null
fi
# Apache with mod_wsgi, for the differential test of `paddock import-apache`
# (tests/tests/apache_diff.rs), which runs its own private Apache on a loopback port. Debian
# enables apache2.service on install; the test never touches that one (nor port 80).
apache=()
for pkg in apache2 libapache2-mod-wsgi-py3; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || apache+=("$pkg")
done
if ((${#apache[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${apache[*]} (run as root: apt-get install --no-install-recommends ${apache[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apache[@]}" >/dev/null
fi
