# Shared settings of the real one-node Kubernetes (sourced by build.sh, up.sh, down.sh, status.sh,
# api-check.sh). Everything lives under the checkout's .cache/ and a run directory; nothing is installed
# outside apt packages. Addresses: the pod bridge 10.244.0.1/24 (the node's IP: kubelet refuses a
# loopback node IP and Endpoints refuse loopback addresses), services 10.96.0.0/16; both private and
# routed nowhere (the CNI config gives pods no default route).
# shellcheck shell=bash

K8S_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
K8S_SCRIPTS="$K8S_ROOT/scripts/e2e/k8s"
# The consumers' log events are named once, in scripts/e2e/consumer_logs.py (log_events.py imports it).
export PYTHONPATH="$K8S_ROOT/scripts/e2e${PYTHONPATH:+:$PYTHONPATH}"

# The Kubernetes version is the preinstalled kubectl's (client and server must agree within one minor;
# matching exactly keeps `kubectl version` quiet). KUBE_VERSION overrides it.
kube_version() {
  if [ -n "${KUBE_VERSION:-}" ]; then echo "$KUBE_VERSION"; return; fi
  kubectl version --client -o json 2>/dev/null \
    | python3 -c 'import json,re,sys; v=json.load(sys.stdin)["clientVersion"]["gitVersion"]; print(re.match(r"v\d+\.\d+\.\d+", v).group(0))'
}
KUBE_VERSION="$(kube_version)"
COREDNS_VERSION="${COREDNS_VERSION:-v1.11.3}"
# NetworkPolicy enforcement next to the bridge CNI: kube-router's firewall only (iptables + ipset).
# v2.1.0 is the newest kube-router the Go module proxy serves. E2E_K8S_NETPOL=none: no enforcer.
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
E2E_K8S_NETPOL="${E2E_K8S_NETPOL:-kube-router}"

CACHE="$K8S_ROOT/.cache/k8s"
BIN="$CACHE/bin-$KUBE_VERSION"             # kube-* binaries, keyed by version
DNS_BIN="$CACHE/coredns-$COREDNS_VERSION"  # coredns binary
KUBE_ROUTER="$CACHE/kube-router-$KUBE_ROUTER_VERSION/kube-router"
IMAGES="$CACHE/images"                     # pause and coredns image archives
export GOMODCACHE="${K8S_GOMODCACHE:-$K8S_ROOT/.cache/go/mod}"
export GOCACHE="${K8S_GOCACHE:-$K8S_ROOT/.cache/go/build}"
export GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN=local

RUN="${K8S_RUN:-$K8S_ROOT/.cache/k8s-run}"   # state of a running cluster (removed by down.sh)
CTR_ROOT="$CACHE/containerd-root"          # containerd's image store persists: warm imports are fast
CTR_SOCK="$RUN/containerd/containerd.sock"
PKI="$RUN/pki"
KUBECONFIG_ADMIN="$RUN/admin.kubeconfig"

NODE_NAME=rk8s
BRIDGE=rk8s0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
CLUSTER_DNS=10.96.0.10
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
COREDNS_IMAGE="registry.k8s.io/coredns/coredns:$COREDNS_VERSION"

export PATH="$BIN:$DNS_BIN:$PATH"

log() { printf '[k8s %s] %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
die() { echo "k8s: $*" >&2; exit 1; }

# Wait up to $1 seconds for the command after it to succeed; poll every 0.2 s (these are readiness
# polls of daemons with no event to await).
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

kc() { kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# apt packages the cluster needs (Debian 12): etcd, containerd + runc, CNI plugins, iptables for
# kube-proxy, conntrack for its UDP cleanup, ipset for kube-router, gcc for the pause binary. Services must not start on install (no init system here,
# and a packaged containerd/etcd on their default sockets would collide with other users).
#   ensure_packages        everything for Pods
#   ensure_packages api    etcd only (the API-server check)
ensure_packages() {
  local need=()
  command -v etcd >/dev/null || need+=(etcd-server)
  if [ "${1:-}" != api ]; then
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v ipset >/dev/null || need+=(ipset)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  log "apt-get install ${need[*]}"
  local policy=/usr/sbin/policy-rc.d had_policy=0
  [ -e "$policy" ] && had_policy=1
  [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
  {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" \
      || { apt-get -o DPkg::Lock::Timeout=600 update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"; }
  } >/dev/null
  local rc=$?
  [ $had_policy = 1 ] || rm -f "$policy"
  return $rc
}

# --- processes ----------------------------------------------------------------------------------
# Each daemon runs in its own session with its log under $RUN/logs; $RUN/pids/NAME holds "pid
# starttime" so that stop_daemon never signals a recycled pid that now belongs to someone else.
proc_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# True while the process recorded for NAME lives (a zombie counts as stopped: daemons whose parent
# script exited are reaped by init a moment later).
daemon_alive() {
  local f="$RUN/pids/$1" pid start state
  [ -f "$f" ] || return 1
  read -r pid start < "$f"
  [ "$(proc_start_time "$pid")" = "$start" ] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

start_daemon() {
  local name="$1"; shift
  mkdir -p "$RUN/pids" "$RUN/logs"
  if daemon_alive "$name"; then return 0; fi
  setsid "$@" >>"$RUN/logs/$name.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid $(proc_start_time "$pid")" > "$RUN/pids/$name"
}

# stop_daemon NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10).
stop_daemon() {
  local name="$1" grace="${2:-10}" f="$RUN/pids/$1" pid start
  [ -f "$f" ] || return 0
  read -r pid start < "$f"
  if daemon_alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "$grace" bash -c "! { s=\$(awk '{print \$3\" \"\$22}' /proc/$pid/stat 2>/dev/null) && [ \"\${s#* }\" = $start ] && [ \"\${s%% *}\" != Z ]; }"; then
      log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

# A TCP port nobody listens on (any address): ports of this cluster are picked at start, never fixed.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# --- PKI and kubeconfigs ------------------------------------------------------------------------
# make_pki DIR API_IP: a throwaway CA, the API server's serving certificate, the service-account key
# pair and a token file with one token per component (admin is system:masters).
make_pki() {
  local dir="$1" ip="$2"
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=rk8s-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    printf '%s\n' "subjectAltName=IP:$ip,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    : > tokens.csv
    for user in "admin|system:masters" "system:node:$NODE_NAME|system:nodes" \
                "system:kube-controller-manager|" "system:kube-scheduler|" "system:kube-proxy|" \
                "system:kube-router|"; do
      echo "$(openssl rand -hex 16),${user%|*},${user%|*},\"${user#*|}\"" >> tokens.csv
    done
    chmod 600 ./*.key tokens.csv
  )
}

# kubeconfig USER SERVER OUT: a kubeconfig with USER's token from the token file.
kubeconfig() {
  local user="$1" server="$2" out="$3" token
  token="$(awk -F, -v u="$user" '$2 == u {print $1}' "$PKI/tokens.csv")"
  [ -n "$token" ] || die "no token for $user"
  cat > "$out" <<KC
apiVersion: v1
kind: Config
clusters:
- name: rk8s
  cluster:
    server: $server
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: rk8s
  context: {cluster: rk8s, user: $user}
current-context: rk8s
KC
  chmod 600 "$out"
}

# --- etcd + kube-apiserver (shared by up.sh and api-check.sh) -----------------------------------
# Ports are chosen once per run and kept in $RUN/ports.env.
load_ports() {
  if [ ! -f "$RUN/ports.env" ]; then
    mkdir -p "$RUN"
    {
      echo "ETCD_PORT=$(free_port)"; echo "ETCD_PEER_PORT=$(free_port)"; echo "API_PORT=$(free_port)"
      echo "KUBELET_PORT=$(free_port)"; echo "KCM_PORT=$(free_port)"; echo "SCHED_PORT=$(free_port)"
      echo "PROXY_METRICS_PORT=$(free_port)"; echo "PROXY_HEALTH_PORT=$(free_port)"
    } > "$RUN/ports.env"
  fi
  # shellcheck disable=SC1091
  source "$RUN/ports.env"
}

start_etcd() {
  local url="http://127.0.0.1:$ETCD_PORT" peer="http://127.0.0.1:$ETCD_PEER_PORT"
  start_daemon etcd etcd --name rk8s --data-dir "$RUN/etcd" \
    --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "rk8s=$peer" --log-level warn
  wait_for 30 etcdctl_health || die "etcd did not become healthy: $(tail -5 "$RUN/logs/etcd.log")"
}
etcdctl_health() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

# start_apiserver IP EXTRA_FLAGS...: serves on https://IP:$API_PORT; admin kubeconfig at $KUBECONFIG_ADMIN.
start_apiserver() {
  local ip="$1"; shift
  [ -f "$PKI/tokens.csv" ] || make_pki "$PKI" "$ip"
  start_daemon kube-apiserver kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$ip" --advertise-address "$ip" --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --kubelet-preferred-address-types InternalIP \
    "$@"
  kubeconfig admin "https://$ip:$API_PORT" "$KUBECONFIG_ADMIN"
  wait_for 60 kc get --raw /readyz || die "kube-apiserver not ready: $(tail -5 "$RUN/logs/kube-apiserver.log")"
}

# --- prometheus-operator CRDs (PodMonitor, PrometheusRule, ...) from its Go module ------------------
PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-v0.85.0}"
CRDS="$CACHE/crds-$PROM_OPERATOR_VERSION"
fetch_crds() {
  [ -f "$CRDS/.complete" ] && return 0
  local dir
  dir="$(cd /tmp && GOFLAGS= go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$CRDS"
  cp "$dir"/example/prometheus-operator-crd/*.yaml "$CRDS/"
  chmod u+w "$CRDS"/*.yaml
  touch "$CRDS/.complete"
}

# apply_crds: server-side (the larger CRDs exceed the client-side last-applied annotation limit)
apply_crds() {
  local args=() f
  for f in "$CRDS"/*.yaml; do args+=(-f "$f"); done
  kc apply --server-side "${args[@]}" >/dev/null
  kc wait --for=condition=Established --timeout=60s "${args[@]}" >/dev/null
}
