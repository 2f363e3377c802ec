#!/usr/bin/env bash
# Debian packages Paddock needs to build and test: Debian's CPython 3.11 with headers (pyo3
# links its libpython3.11.so), protoc (etcd-client, in paddock-cluster, compiles etcd's gRPC
# definitions when it is built), venv/pip (tenant virtualenvs) and locales (the tests build the
# locales an example config names with localedef), Prometheus (tests/tests/metrics.rs) and
# PostgreSQL's server (tests/tests/postgres.rs runs its own cluster in a temp directory on a
# free port; the Debian cluster the package may start is not used) and etcd's server
# (cluster/tests/ start their own etcd on free loopback ports) and HAProxy (tests/tests/
# cluster_nodes.rs puts its own, in the foreground on a free loopback port, in front of the
# nodes; the Debian service the package may start is not used). Needs root; skips what is
# there.
#   install-deps.sh            everything the tests need (also prometheus, postgresql, a browser)
#   install-deps.sh --runtime  only what building and serving need (deploy/demo.sh)
set -euo pipefail
runtime=(python3.11 python3.11-dev python3.11-venv python3-pip libpython3.11 locales protobuf-compiler)

# install_missing [--no-install-recommends] PKG...: install those of PKG not installed yet
# (as root; otherwise say what to run and fail), saying which.
install_missing() {
  local opts=()
  if [[ ${1:-} == --no-install-recommends ]]; then
    opts=("$1")
    shift
  fi
  local need=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
  done
  ((${#need[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${need[*]} (run as root: apt-get install ${opts[*]:+${opts[*]} }${need[*]})" >&2
    exit 1
  fi
  echo "install-deps: installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opts[@]}" "${need[@]}" >/dev/null
}

if [[ ${1:-} == --runtime ]]; then
  install_missing "${runtime[@]}"
  exit 0
fi
install_missing "${runtime[@]}" prometheus postgresql etcd-server haproxy
# curl (with HTTP/2) and the openssl CLI for tests/tests/tls.rs: a throwaway CA, HTTPS by SNI,
# HTTP/2 by ALPN and h2c. nghttp2-client's h2load for the HTTP/2 figures in docs/benchmarks.md.
install_missing curl openssl nghttp2-client
# Headless Chromium and its WebDriver, for the signup page's browser test
# (tests/tests/signup_browser.rs). Without recommends: no desktop services come along.
install_missing --no-install-recommends chromium chromium-driver
# Apache with mod_wsgi, for the differential test of `paddock import-apache`
# (tests/tests/apache_diff.rs), which runs its own private Apache on a loopback port. Debian
# enables apache2.service on install; the test never touches that one (nor port 80).
install_missing --no-install-recommends apache2 libapache2-mod-wsgi-py3
