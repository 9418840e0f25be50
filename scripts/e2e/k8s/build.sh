#!/usr/bin/env bash
# Build what the real one-node cluster needs, once per version, into .cache/k8s/:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy  (Go module proxy,
#     k8s.io/kubernetes at the preinstalled kubectl's version)
#   coredns                                                                       (Go module proxy)
#   kube-router, its NetworkPolicy firewall only                                  (Go module proxy)
#   image archives for registry.k8s.io/pause and the CoreDNS image (no registry here: built from the
#     pause.c of the kubernetes module and the coredns binary, as docker-archive tars for `ctr import`)
# and installs the Debian packages (etcd, containerd, runc, CNI plugins, iptables, conntrack).
#
#   build.sh                  everything
#   build.sh kube-apiserver   only the API server (what `make e2e-k8s-api` needs)
#
# Cold on 2 cores: ~1 min of module downloads, ~5 min to compile the five commands, ~1.5 min CoreDNS,
# ~3 min kube-router.
# Existing binaries are kept; the Go caches live in .cache/go, so an interrupted build resumes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ALL=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${ALL[@]}" coredns kube-router images)

api_only=1
for w in "${want[@]}"; do [ "$w" = kube-apiserver ] || api_only=0; done
if [ $api_only = 1 ]; then ensure_packages api; else ensure_packages; fi
command -v go >/dev/null || die "go is missing: Go >= 1.23 is needed (Debian 12's golang-go is 1.19: too old)"
go_minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
[ "${go_minor:-0}" -ge 23 ] || die "$(go env GOVERSION) is too old: Kubernetes $KUBE_VERSION needs Go >= 1.23"

# --- kube-* from k8s.io/kubernetes ----------------------------------------------------------------
kube_missing=()
for w in "${want[@]}"; do
  case " ${ALL[*]} " in *" $w "*) [ -x "$BIN/$w" ] || kube_missing+=("$w") ;; esac
done
if [ ${#kube_missing[@]} -gt 0 ]; then
  src="$CACHE/src-$KUBE_VERSION"
  mkdir -p "$src" "$BIN"
  staging="v0.${KUBE_VERSION#v1.}"   # k8s.io/api etc. are tagged v0.<minor>.<patch>
  if [ ! -f "$src/go.sum" ] || ! grep -q "k8s.io/kubernetes $KUBE_VERSION " "$src/go.sum"; then
    log "downloading k8s.io/kubernetes@$KUBE_VERSION (go module proxy)"
    gomod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    # k8s.io/kubernetes replaces its staging modules with ./staging/...; a module that depends on it
    # must replace them with the published versions instead (one line per staging module).
    {
      echo "module streampair.local/rk8s"
      echo
      echo "go 1.23"
      echo
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9./-]*\) => \./staging/.*#\1#p' "$gomod" \
        | sort -u | while read -r m; do echo "	$m => $m $staging"; done
      echo ")"
    } > "$src/go.mod"
    rm -f "$src/go.sum"
    pkgs=(); for c in "${ALL[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$KUBE_VERSION"); done
    (cd "$src" && go get "${pkgs[@]}")
  fi
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  pkgs=(); for c in "${kube_missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "go build ${kube_missing[*]} (minutes on a cold cache)"
  tmp="$(mktemp -d "$CACHE/out.XXXXXX")"
  (cd "$src" && CGO_ENABLED=0 go build -ldflags "$ld" -o "$tmp/" "${pkgs[@]}")
  mv "$tmp"/* "$BIN/" && rmdir "$tmp"
  "$BIN/${kube_missing[0]}" --version
fi

# --- CoreDNS ---------------------------------------------------------------------------------------
for w in "${want[@]}"; do [ "$w" = coredns ] || continue
  if [ ! -x "$DNS_BIN/coredns" ]; then
    src="$CACHE/src-coredns-$COREDNS_VERSION"
    mkdir -p "$src" "$DNS_BIN"
    [ -f "$src/go.mod" ] || (cd "$src" && go mod init streampair.local/coredns >/dev/null 2>&1)
    log "go get + build github.com/coredns/coredns@$COREDNS_VERSION"
    (cd "$src" && go get "github.com/coredns/coredns@$COREDNS_VERSION" \
      && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$DNS_BIN/coredns.tmp" github.com/coredns/coredns)
    mv "$DNS_BIN/coredns.tmp" "$DNS_BIN/coredns"
  fi
done

# --- kube-router (NetworkPolicy enforcement) -------------------------------------------------------
for w in "${want[@]}"; do [ "$w" = kube-router ] || continue
  if [ ! -x "$KUBE_ROUTER" ]; then
    src="$CACHE/src-kube-router-$KUBE_ROUTER_VERSION"
    mkdir -p "$src" "$(dirname "$KUBE_ROUTER")"
    [ -f "$src/go.mod" ] || (cd "$src" && go mod init streampair.local/kube-router >/dev/null 2>&1)
    log "go get + build github.com/cloudnativelabs/kube-router/v2@$KUBE_ROUTER_VERSION"
    (cd "$src" && go get "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION" \
      && CGO_ENABLED=0 go build -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
           -o "$KUBE_ROUTER.tmp" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
    mv "$KUBE_ROUTER.tmp" "$KUBE_ROUTER"
  fi
done

# --- pause and CoreDNS images ---------------------------------------------------------------------
for w in "${want[@]}"; do [ "$w" = images ] || continue
  mkdir -p "$IMAGES"
  if [ ! -f "$IMAGES/pause.tar" ]; then
    pause_c="$(cd "$CACHE/src-$KUBE_VERSION" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
    command -v gcc >/dev/null || die "gcc is missing (apt-get install gcc libc6-dev): needed to build the pause binary"
    root="$(mktemp -d)"
    gcc -Os -static -o "$root/pause" "$pause_c"
    python3 "$K8S_SCRIPTS/image_archive.py" --rootfs "$root" --tag "$PAUSE_IMAGE" \
      --entrypoint /pause --out "$IMAGES/pause.tar"
    rm -rf "$root"
  fi
  if [ ! -f "$IMAGES/coredns-$COREDNS_VERSION.tar" ]; then
    root="$(mktemp -d)"
    cp "$DNS_BIN/coredns" "$root/coredns"
    python3 "$K8S_SCRIPTS/image_archive.py" --rootfs "$root" --tag "$COREDNS_IMAGE" \
      --entrypoint /coredns --out "$IMAGES/coredns-$COREDNS_VERSION.tar"
    rm -rf "$root"
  fi
done
log "build done: $BIN"
