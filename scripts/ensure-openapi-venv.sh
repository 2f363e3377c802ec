#!/usr/bin/env bash
# Create (once) a virtualenv with the OpenAPI tools the admin API test checks docs/openapi.yaml
# and the live answers with. Usage: scripts/ensure-openapi-venv.sh DIR. Idempotent and safe to
# run concurrently (flock).
set -euo pipefail
venv=${1:?usage: ensure-openapi-venv.sh DIR}
py=/usr/bin/python3
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
stamp="openapi-spec-validator==0.7.2 jsonschema==4.23.0 PyYAML==6.0.2"
if [[ -f $venv/.paddock-ready && $(<"$venv/.paddock-ready") == "$stamp" ]]; then
  exit 0
fi
rm -rf "$venv"
$py -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/pip" install --quiet --disable-pip-version-check $stamp
echo "$stamp" >"$venv/.paddock-ready"
