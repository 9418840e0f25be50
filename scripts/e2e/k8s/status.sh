#!/usr/bin/env bash
# Is the one-node cluster up? Daemons (pid, alive), node, Pods; exit 0 when up, 3 when stopped.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

if [ ! -d "$RUN/pids" ]; then echo "stopped"; exit 3; fi
for name in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  if daemon_alive "$name"; then state="running (pid $(cut -d' ' -f1 "$RUN/pids/$name"))"; else state="NOT running"; fi
  printf '%-24s %s\n' "$name" "$state"
done
echo
kc get nodes -o wide 2>&1
echo
kc get pods -A -o wide 2>&1
echo
echo "kubectl --kubeconfig $KUBECONFIG_ADMIN ...   (logs: $RUN/logs/)"
