#!/usr/bin/env bash
# make e2e-k8s-api: every overlay against a real Kubernetes API server, no Pods.
#   etcd (Debian) + kube-apiserver (built from the Go module proxy at the preinstalled kubectl's
#   version, cached in .cache/k8s) on 127.0.0.1 with free ports; the prometheus-operator CRDs from its
#   Go module; then scripts/e2e/k8s/api_checks.py (server-side dry-run of every overlay, each pod
#   template admitted under the enforced `restricted` profile, a privileged negative control refused).
# Everything it starts is stopped by pid at the end, also on failure or Ctrl-C.
set -euo pipefail
export K8S_RUN="${K8S_API_RUN:-$(cd "$(dirname "$0")/../../.." && pwd)/.cache/k8s-api-run}"
source "$(dirname "$0")/lib.sh"

T0=$EPOCHREALTIME
cleanup() {
  local rc=$?
  stop_daemon kube-apiserver
  stop_daemon etcd
  rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$K8S_SCRIPTS/build.sh" kube-apiserver
fetch_crds
T_BUILD=$(elapsed "$T0")
rm -rf "$RUN"; mkdir -p "$RUN"
load_ports
start_etcd
# Endpoints may not be loopback addresses: no reconciler for the `kubernetes` Service (no Pods here)
start_apiserver 127.0.0.1 --endpoint-reconciler-type=none
T_UP=$(elapsed "$T0")
apply_crds
log "kube-apiserver $(kc version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') ready; CRDs $PROM_OPERATOR_VERSION applied"
rc=0
python3 "$K8S_SCRIPTS/api_checks.py" --kubeconfig "$KUBECONFIG_ADMIN" "$K8S_ROOT"/k8s/overlays/*/ || rc=$?
echo "e2e-k8s-api: $([ $rc = 0 ] && echo PASS || echo FAIL) | wall $(elapsed "$T0")s (build/cache ${T_BUILD}s, etcd+apiserver up at ${T_UP}s) | kube-apiserver $KUBE_VERSION, prometheus-operator CRDs $PROM_OPERATOR_VERSION"
exit $rc
