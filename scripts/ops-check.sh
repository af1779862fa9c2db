#!/usr/bin/env bash
# Checks the ops pack: the Prometheus rules (`promtool check rules`) and their unit tests
# (`promtool test rules`, each alert once firing and once quiet), the dashboard's queries
# (parsed by promtool), and the Kubernetes manifests against the API schemas
# (`kubernetes-validate --strict`, which carries the schemas: no network at check time).
# Installs Debian's `prometheus` package for promtool when it is missing (as root, or with
# `sudo -n`), and kubernetes-validate from PyPI with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "promtool is missing and packages cannot be installed (not root, no sudo -n)" >&2
        exit 1
    fi
    echo "installing promtool (Debian package prometheus)"
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -1

promtool check rules deploy/prometheus/evd.rules.yml
(cd deploy/prometheus && promtool test rules evd.rules.test.yml)

# The manifests against the schemas of the Kubernetes version named (unknown fields fail).
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! command -v kubernetes-validate >/dev/null; then
    echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
kubernetes-validate --strict --kubernetes-version 1.30.0 deploy/kubernetes/*.yaml

# The dashboard's queries must parse too: each becomes a recording rule (Grafana's variables
# replaced by what they stand for) and promtool checks the file.
rules=$(mktemp --suffix=.yml)
trap 'rm -f "$rules"' EXIT
python3 - deploy/grafana/evd.json >"$rules" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
if not exprs:
    sys.exit("no queries in the dashboard")
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = (e.replace("$__rate_interval", "5m").replace("$instance", ".*")
          .replace("$api_instance", ".*"))
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}")
PY
echo "deploy/grafana/evd.json: every panel query parses"
promtool check rules "$rules"
