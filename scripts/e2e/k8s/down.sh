#!/usr/bin/env bash
# Stop the one-node cluster started by up.sh and leave nothing behind: every daemon by its recorded
# pid, then no container task, mount, veth, bridge, KUBE-* iptables chain, cgroup or run directory.
# Logs of the last run are kept in .cache/k8s/last-run-logs/. Safe to run twice, or after a failed up.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

t0=$EPOCHREALTIME
if [ ! -d "$RUN" ] && ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "nothing to stop"
  exit 0
fi
[ -f "$RUN/ports.env" ] && source "$RUN/ports.env"
ctr_() { ctr -a "$CTR_SOCK" -n k8s.io "$@"; }

# 1. No new pods (controllers and scheduler off), then let the kubelet tear the pods down: it stops
#    the containers, runs CNI DEL (veths, IPs) and unmounts the volumes.
stop_daemon kube-controller-manager
stop_daemon kube-scheduler
stop_daemon kube-router
if daemon_alive kube-apiserver && daemon_alive kubelet; then
  kc delete pods --all --all-namespaces --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
  wait_for 30 bash -c "[ -z \"\$(ctr -a '$CTR_SOCK' -n k8s.io tasks ls -q 2>/dev/null)\" ]" \
    || log "containers still running after 30 s: killing them"
fi
stop_daemon kube-proxy
stop_daemon kubelet

# 2. Whatever the kubelet did not stop, and the container records (their snapshots go with them),
#    so that the image store kept in .cache starts clean next time.
if daemon_alive containerd; then
  for task in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  for _ in $(seq 50); do
    tasks="$(ctr_ tasks ls -q 2>/dev/null)"
    [ -z "$tasks" ] && break
    for task in $tasks; do ctr_ tasks rm -f "$task" >/dev/null 2>&1 || true; done
    sleep 0.2
  done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1 || true; done
fi
stop_daemon kube-apiserver
stop_daemon etcd
stop_daemon containerd 15

# 3. iptables: kube-proxy's own cleanup, then what it leaves (KUBE-FIREWALL, canaries, KUBE-MARK-*,
#    the kubelet's chains): delete the jumps to KUBE-* chains, then flush and delete the chains.
if [ -x "$BIN/kube-proxy" ] && command -v iptables >/dev/null; then
  "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  for ipt in iptables ip6tables; do
    for table in filter nat mangle; do
      "$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z-]+ .*-j KUBE-' | grep -vE '^-A KUBE-' \
        | while read -r rule; do
            # iptables -S quotes comments the shell way: eval splits the rule back into its words
            eval "\"\$ipt\" -t \"\$table\" ${rule/-A /-D }" 2>/dev/null || true
          done
      chains="$("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}')"
      for chain in $chains; do "$ipt" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
fi
# kube-router's chains went with the KUBE-* ones above; its ipsets (KUBE-SRC-*, KUBE-DST-*, ...) now
# have no references left and can go too.
if command -v ipset >/dev/null; then
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)'); do ipset destroy "$set" 2>/dev/null || true; done
fi
if iptables -S RK8S-FORWARD >/dev/null 2>&1; then
  iptables -D FORWARD -j RK8S-FORWARD 2>/dev/null || true
  iptables -F RK8S-FORWARD && iptables -X RK8S-FORWARD
fi
[ -f "$RUN/ip_forward.orig" ] && cat "$RUN/ip_forward.orig" > /proc/sys/net/ipv4/ip_forward

# 4. Mounts (volumes, netns pins, sandbox shm, overlay rootfs) under the run dir and the image store.
for dir in "$RUN" "$CTR_ROOT"; do
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
done

# 5. Network: veths left on the bridge (normally gone with their netns), then the bridge.
for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link del "$veth" 2>/dev/null || true
done
ip link del "$BRIDGE" 2>/dev/null || true

# 6. Empty pod cgroups the kubelet created (cgroupfs driver: one tree per v1 controller).
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
  [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 7. Keep the logs, drop the run dir (--one-file-system: never descend into something still mounted).
rm -rf "$CACHE/last-run-logs"
[ -d "$RUN/logs" ] && mkdir -p "$CACHE" && cp -r "$RUN/logs" "$CACHE/last-run-logs"
rm -rf --one-file-system "$RUN" 2>/dev/null || log "could not remove all of $RUN: $(awk -v d="$RUN/" 'index($2, d) == 1' /proc/mounts | head -3)"
log "down in $(elapsed "$t0")s"
