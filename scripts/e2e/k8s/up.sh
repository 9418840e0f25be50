#!/usr/bin/env bash
# Start the real one-node Kubernetes (idempotent: a running cluster is left as it is):
#   bridge rk8s0 10.244.0.1/24 -> containerd (private socket, CNI bridge) -> pause/CoreDNS images ->
#   etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kubelet, kube-proxy ->
#   node Ready -> CoreDNS Ready, kube-router's NetworkPolicy firewall (E2E_K8S_NETPOL=none: without)
#   -> a hostPath PersistentVolume for the demo's Pulsar claim.
#
#   up.sh [IMAGES.tar...]   also import these `docker save` archives into containerd
#
# Needs root, the binaries from build.sh and nothing else; stop it with down.sh. Admin kubeconfig:
# .cache/k8s-run/admin.kubeconfig (status.sh prints how to use it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root (containerd, kubelet, iptables)"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: run scripts/e2e/k8s/build.sh"
done
[ -x "$DNS_BIN/coredns" ] && [ -f "$IMAGES/pause.tar" ] || die "CoreDNS/pause image missing: run scripts/e2e/k8s/build.sh"
ensure_packages

if [ -f "$RUN/up.done" ] && daemon_alive kubelet && daemon_alive kube-apiserver; then
  log "already up"
  for tar in "$@"; do ctr -a "$CTR_SOCK" -n k8s.io images import "$tar" >/dev/null; done
  exit 0
fi
if ip link show "$BRIDGE" >/dev/null 2>&1 && [ ! -d "$RUN" ]; then
  die "bridge $BRIDGE exists but $RUN does not: another cluster from another checkout? (down.sh there)"
fi

t0=$EPOCHREALTIME
mkdir -p "$RUN"/{pids,logs,cni/net.d,pv} "$CTR_ROOT"
load_ports

# --- network: the pod bridge carries the node IP ---------------------------------------------------
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
fi
# Pod -> ClusterIP -> Pod is routed through the host: forwarding must be on while the cluster runs.
# If it was off, forward only bridge-to-bridge traffic (RK8S-FORWARD) so nothing else on the machine
# starts being routed; down.sh restores both.
[ -f "$RUN/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward > "$RUN/ip_forward.orig"
if [ "$(cat "$RUN/ip_forward.orig")" = 0 ] && ! iptables -S RK8S-FORWARD >/dev/null 2>&1; then
  iptables -N RK8S-FORWARD
  iptables -A RK8S-FORWARD -i "$BRIDGE" -o "$BRIDGE" -j RETURN
  # Traffic inside another bridge (a Docker compose network, with br_netfilter on) is switched, not
  # routed: leave it alone, or a compose stack running beside the cluster loses its network.
  iptables -A RK8S-FORWARD -m physdev --physdev-is-bridged -j RETURN 2>/dev/null || true
  iptables -A RK8S-FORWARD -j DROP
  iptables -I FORWARD 1 -j RK8S-FORWARD
fi
echo 1 > /proc/sys/net/ipv4/ip_forward

# Pods get routes to the pod and service ranges only: no default route, so nothing leaves the machine.
cat > "$RUN/cni/net.d/10-rk8s.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "rk8s",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$RUN/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "10.244.0.0/16"}, {"dst": "$SERVICE_CIDR"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# --- containerd ------------------------------------------------------------------------------------
# restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and CRI would give the sandbox an
# oom_score_adj of -998, which runc then fails to set ("can't get final child's PID from pipe").
cat > "$RUN/containerd.toml" <<EOF
version = 2
root = "$CTR_ROOT"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CACHE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
EOF
start_daemon containerd containerd --config "$RUN/containerd.toml"
wait_for 30 ctr -a "$CTR_SOCK" version || die "containerd did not start: $(tail -5 "$RUN/logs/containerd.log")"
import_images() {
  local tar
  for tar in "$@"; do
    ctr -a "$CTR_SOCK" -n k8s.io images import "$tar" >/dev/null \
      || die "import of $tar failed"
  done
}
import_images "$IMAGES/pause.tar" "$IMAGES/coredns-$COREDNS_VERSION.tar"

# --- control plane ---------------------------------------------------------------------------------
start_etcd
start_apiserver "$NODE_IP"
SERVER="https://$NODE_IP:$API_PORT"
kubeconfig system:kube-controller-manager "$SERVER" "$RUN/kcm.kubeconfig"
kubeconfig system:kube-scheduler "$SERVER" "$RUN/scheduler.kubeconfig"
kubeconfig "system:node:$NODE_NAME" "$SERVER" "$RUN/kubelet.kubeconfig"
kubeconfig system:kube-proxy "$SERVER" "$RUN/proxy.kubeconfig"

start_daemon kube-controller-manager kube-controller-manager --kubeconfig "$RUN/kcm.kubeconfig" \
  --authentication-kubeconfig "$RUN/kcm.kubeconfig" --authorization-kubeconfig "$RUN/kcm.kubeconfig" \
  --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$RUN/kcm-certs"
start_daemon kube-scheduler kube-scheduler --kubeconfig "$RUN/scheduler.kubeconfig" \
  --authentication-kubeconfig "$RUN/scheduler.kubeconfig" --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --cert-dir "$RUN/scheduler-certs"

# --- node ------------------------------------------------------------------------------------------
# cgroupfs driver on this machine's (hybrid) cgroup v1; anonymous + AlwaysAllow on the kubelet API so
# the API server's exec/logs/port-forward need no kubelet client certificate (the API listens on the
# private bridge only). Imported images are never garbage collected.
cat > "$RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CTR_SOCK
podLogsDir: $RUN/pod-logs
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: ""
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  nodefs.available: "2%"
  imagefs.available: "2%"
  memory.available: "100Mi"
serializeImagePulls: false
EOF
start_daemon kubelet kubelet --config "$RUN/kubelet.yaml" --kubeconfig "$RUN/kubelet.kubeconfig" \
  --root-dir "$RUN/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --cert-dir "$RUN/kubelet-pki"
# --iptables-localhost-nodeports=false: no route_localnet sysctl change on the host
start_daemon kube-proxy kube-proxy --kubeconfig "$RUN/proxy.kubeconfig" --hostname-override "$NODE_NAME" \
  --proxy-mode iptables --cluster-cidr 10.244.0.0/16 --conntrack-max-per-core 0 \
  --iptables-localhost-nodeports=false \
  --metrics-bind-address "127.0.0.1:$PROXY_METRICS_PORT" --healthz-bind-address "127.0.0.1:$PROXY_HEALTH_PORT"

wait_for 60 kc get node "$NODE_NAME" || die "node did not register: $(tail -5 "$RUN/logs/kubelet.log")"
kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=60s >/dev/null \
  || die "node not Ready: $(tail -5 "$RUN/logs/kubelet.log")"
wait_for 60 kc -n default get serviceaccount default || die "no default ServiceAccount (controller-manager?)"

# --- cluster add-ons ---------------------------------------------------------------------------------
sed -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#" -e "s#@CLUSTER_DNS@#$CLUSTER_DNS#" \
  "$K8S_SCRIPTS/manifests/coredns.yaml" | kc apply -f - >/dev/null
# One hostPath volume without a storage class: a claim without a class (the demo's Pulsar) binds to it.
mkdir -p "$RUN/pv/data-0" && chmod 0777 "$RUN/pv/data-0"
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: rk8s-data-0
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $RUN/pv/data-0, type: Directory}
EOF
# NetworkPolicy: kube-router's firewall (no routing, no service proxy, no CNI of its own), no ports.
if [ "$E2E_K8S_NETPOL" = kube-router ]; then
  [ -x "$KUBE_ROUTER" ] || die "$KUBE_ROUTER missing: run scripts/e2e/k8s/build.sh (or E2E_K8S_NETPOL=none)"
  kc apply -f "$K8S_SCRIPTS/manifests/kube-router-rbac.yaml" >/dev/null
  kubeconfig system:kube-router "$SERVER" "$RUN/kube-router.kubeconfig"
  start_daemon kube-router "$KUBE_ROUTER" --kubeconfig "$RUN/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --hostname-override "$NODE_NAME" --service-cluster-ip-range "$SERVICE_CIDR" \
    --health-port 0 --metrics-port 0
  wait_for 60 iptables -S KUBE-ROUTER-FORWARD || die "kube-router did not set up its chains: $(tail -5 "$RUN/logs/kube-router.log")"
fi
import_images "$@"
kc -n kube-system rollout status deployment/coredns --timeout=60s >/dev/null \
  || die "CoreDNS not Ready: $(kc -n kube-system get pods -o wide 2>&1)"
touch "$RUN/up.done"
log "up in $(elapsed "$t0")s: kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -A"
