#!/usr/bin/env bash
# make e2e-k8s: the streampair story on a real one-node Kubernetes, then everything stopped.
#
#   e2e.sh IMAGES.tar      (a `docker save` archive with ghcr.io/streampair/{producer,consumer,broker}:0.1.0
#                           and apachepulsar/pulsar:4.0.8: `make e2e-images` writes .cache/e2e/images.tar)
#
# build (cached binaries: seconds) -> up.sh (imports the images) -> CRDs -> checks.py on
# k8s/overlays/demo -> down.sh. The last line is the summary (wall times, takeover times). On failure or
# Ctrl-C the cluster is still stopped; E2E_K8S_KEEP=1 leaves it running for a look (down.sh stops it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

IMAGES_TAR="${1:?usage: e2e.sh IMAGES.tar}"
[ -f "$IMAGES_TAR" ] || die "$IMAGES_TAR missing: make e2e-images"
# E2E_K8S_BROKER=pulsar (default): k8s/overlays/demo as it is, its Pulsar image from the archive;
# E2E_K8S_BROKER=embedded: the same overlay with the embedded broker in Pulsar's place.
case "${E2E_K8S_BROKER:-pulsar}" in
  pulsar) OVERLAY="$K8S_ROOT/k8s/overlays/demo" ;;
  embedded) OVERLAY="$K8S_SCRIPTS/overlay-embedded" ;;
  *) die "E2E_K8S_BROKER is pulsar or embedded" ;;
esac
# Every image the overlay names must come from the archive (no registry here).
mapfile -t REQUIRED_IMAGES < <(kubectl kustomize "$OVERLAY" | awk '$1 == "image:" || $1 == "-" && $2 == "image:" {print $NF}' | tr -d '"' | sort -u)
RESULTS="$CACHE/e2e-results.json"

T0=$EPOCHREALTIME
declare -A PHASE=()
phase_start() { PHASE_T=$EPOCHREALTIME; log "== $1"; }
phase_end() { PHASE[$1]=$(elapsed "$PHASE_T"); }
down_done=0
finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${E2E_K8S_KEEP:-0}" = 1 ]; then
    log "E2E_K8S_KEEP=1: the cluster keeps running; stop it with scripts/e2e/k8s/down.sh"
  elif [ $down_done = 0 ]; then
    phase_start down; "$K8S_SCRIPTS/down.sh" || true; phase_end down
  fi
  leftovers
  local args=() k
  for k in build up checks down; do [ -n "${PHASE[$k]:-}" ] && args+=("$k=${PHASE[$k]}"); done
  python3 "$K8S_SCRIPTS/report.py" summary "$RESULTS" "${args[@]}" "total=$(elapsed "$T0")" || rc=1
  exit $rc
}
# Anything of ours still there after down (processes, mounts, veths, bridge, KUBE chains) is a failure.
leftovers() {
  [ "${E2E_K8S_KEEP:-0}" = 1 ] && return 0
  local found=()
  ip link show "$BRIDGE" >/dev/null 2>&1 && found+=("bridge $BRIDGE")
  grep -q " $K8S_ROOT/.cache/k8s" /proc/mounts && found+=("mounts under .cache/k8s*")
  iptables -S 2>/dev/null | grep -q -- '-N KUBE-' && found+=("KUBE-* iptables chains")
  iptables-legacy-save 2>/dev/null | grep -q 'KUBE-' && found+=("KUBE-* iptables-legacy chains")
  ipset list -n 2>/dev/null | grep -qE '^(KUBE-|kube-router)' && found+=("kube-router ipsets")
  pgrep -f "$RUN/containerd.toml|$BIN/|containerd-shim-runc-v2 -namespace k8s.io .*-address $RUN" >/dev/null && found+=("processes")
  if [ ${#found[@]} -gt 0 ]; then
    echo "LEFTOVER after down: ${found[*]}" >&2
    return 1
  fi
  log "after down: no process, mount, bridge or KUBE chain of the cluster remains"
}
trap finish EXIT
trap 'exit 130' INT TERM

rm -f "$RESULTS"
phase_start build
"$K8S_SCRIPTS/build.sh"
fetch_crds
phase_end build

phase_start up
"$K8S_SCRIPTS/up.sh" "$IMAGES_TAR"
missing=()
present="$(ctr -a "$CTR_SOCK" -n k8s.io images ls -q)"  # once: `ctr | grep -q` would die of SIGPIPE
for image in "${REQUIRED_IMAGES[@]}"; do
  grep -qxF -e "docker.io/$image" -e "$image" <<< "$present" || missing+=("$image")
done
[ ${#missing[@]} -eq 0 ] || die "$OVERLAY uses images that are not in $IMAGES_TAR: ${missing[*]}"
apply_crds
phase_end up

phase_start checks
NETPOL_ARGS=()
[ "$E2E_K8S_NETPOL" = kube-router ] && NETPOL_ARGS=(--netpol-enforcer "kube-router $KUBE_ROUTER_VERSION (firewall only, next to the bridge CNI)")
rc=0
python3 "$K8S_SCRIPTS/checks.py" --kubeconfig "$KUBECONFIG_ADMIN" --pod-logs "$RUN/pod-logs" \
  --overlay "$OVERLAY" --node "$NODE_NAME" --results "$RESULTS" --save-logs "$RUN/logs/pods" "${NETPOL_ARGS[@]}" || rc=$?
phase_end checks

if [ "${E2E_K8S_KEEP:-0}" != 1 ]; then
  phase_start down
  "$K8S_SCRIPTS/down.sh"
  phase_end down
  down_done=1
fi
exit $rc
