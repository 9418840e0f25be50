# Local stand-ins for third-party images that cannot be pulled (no container registry), made from
# package registries only and tagged with the exact names the project uses, so that the Dockerfile
# and the compose files run unchanged. Sourced by scripts/e2e/docker.sh; each function gets the image
# name and the recipe hash to put in the stand-in label, and logs to its own file.
# None of this is used where the real images can be pulled.

# docker/dockerfile:1.x: the BuildKit Dockerfile frontend that `# syntax=` names, built with Go. The
# label is the real image's: BuildKit runs the frontend without a network (our engine has no bridge).
standin_frontend() {
  local image="$1" hash="$2" tag version dir
  tag="${image##*:}"
  case "$tag" in
    1.7 | 1.7.*) version=v0.13.2 ;;   # buildkit release that ships dockerfile frontend 1.7
    *) echo "no buildkit version known for $image" >&2; return 1 ;;
  esac
  dir="$CACHE/standins/frontend"
  rm -rf "$dir" && mkdir -p "$dir/root/bin"
  GOMODCACHE="$ROOT/.cache/go/mod" GOCACHE="$ROOT/.cache/go/build" GOFLAGS=-modcacherw CGO_ENABLED=0 GOBIN="$dir/root/bin" \
    go install -trimpath -ldflags "-s -w" "github.com/moby/buildkit/frontend/dockerfile/cmd/dockerfile-frontend@$version"
  tar -C "$dir/root" -c . | docker import \
    --change 'ENTRYPOINT ["/bin/dockerfile-frontend"]' \
    --change "LABEL $STANDIN_LABEL=$hash" \
    --change 'LABEL moby.buildkit.frontend.network.none=true' - "$image"
}

# ghcr.io/astral-sh/uv:X: /uv and /uvx from PyPI's uv==X wheel (the image holds nothing else).
standin_uv() {
  local image="$1" hash="$2" version dir platform
  version="${image##*:}"
  dir="$CACHE/standins/uv"
  rm -rf "$dir" && mkdir -p "$dir/wheel" "$dir/root"
  case "$(uname -m)" in
    x86_64) platform=manylinux_2_17_x86_64 ;;
    aarch64) platform=manylinux_2_17_aarch64 ;;
    *) echo "no uv wheel platform for $(uname -m)" >&2; return 1 ;;
  esac
  python3 -m pip download -q --no-deps --only-binary=:all: --platform "$platform" \
    --dest "$dir/wheel" "uv==$version"
  python3 - "$dir" <<'EOF'
import pathlib, sys, zipfile
root = pathlib.Path(sys.argv[1])
wheel = next((root / "wheel").glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.endswith(("/scripts/uv", "/scripts/uvx")):
            target = root / "root" / name.rsplit("/", 1)[1]
            target.write_bytes(zf.read(name))
            target.chmod(0o755)
EOF
  [[ -x "$dir/root/uv" && -x "$dir/root/uvx" ]]
  tar -C "$dir/root" -c . | docker import --change "LABEL $STANDIN_LABEL=$hash" - "$image"
}

# python:3.11-slim-bookworm: a Debian bookworm minbase with Debian's python3.11 (3.11.2, not the
# official build: good for these stories, said in the README). The machine's extra CA certificates
# (a TLS-intercepting proxy in front of the package registries) are trusted inside, so that uv in the
# Dockerfile reaches PyPI; builds use the host network (no NAT from our engine).
standin_python() {
  local image="$1" hash="$2" rootfs="$CACHE/standins/python/rootfs" mirror
  mirror="${E2E_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  command -v debootstrap >/dev/null || apt_install debootstrap
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase --include=python3.11,ca-certificates,passwd bookworm "$rootfs" "$mirror"
  local name
  for name in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/$name"; done
  local env_args=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8')
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
    env_args+=(--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt')
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -c . | docker import "${env_args[@]}" \
    --change 'CMD ["python3"]' --change "LABEL $STANDIN_LABEL=$hash" - "$image"
  rm -rf "$rootfs"
}

# prom/prometheus: Debian's prometheus package (2.42) on the Debian base, with the real image's
# entrypoint, user, working directory and wget (compose's healthcheck uses it).
standin_prometheus() {
  local image="$1" hash="$2"
  docker build --network host --label "$STANDIN_LABEL=$hash" -t "$image" "$HERE/standins/prometheus"
}

# apachepulsar/pulsar:X: Debian's Java 17 runtime and the jars scripts/pulsar-standalone assembles from
# Maven Central (version X, from scripts/pulsar/pom.xml), with the real image's layout: /pulsar,
# bin/pulsar standalone, bin/pulsar-admin brokers healthcheck, PULSAR_MEM, data in /pulsar/data, uid 10000.
standin_pulsar() {
  local image="$1" hash="$2" version pom_version ctx="$CACHE/standins/pulsar"
  version="${image##*:}"
  pom_version="$(sed -n 's:.*<pulsar.version>\(.*\)</pulsar.version>.*:\1:p' "$ROOT/scripts/pulsar/pom.xml" | head -n1)"
  [[ $version == "$pom_version" ]] ||
    { echo "$image but scripts/pulsar/pom.xml assembles $pom_version: use one Pulsar version" >&2; return 1; }
  "$ROOT/scripts/pulsar-standalone" fetch
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -r "$HERE/standins/pulsar/." "$ctx/"
  cp -al "$ROOT/.cache/pulsar/lib" "$ctx/lib" 2>/dev/null || cp -r "$ROOT/.cache/pulsar/lib" "$ctx/lib"
  rm -f "$ctx/lib/.complete"
  docker build --network host --label "$STANDIN_LABEL=$hash" --build-arg "PULSAR_VERSION=$version" \
    -t "$image" "$ctx"
  rm -rf "$ctx"
}

# jaegertracing/jaeger:X: the binary scripts/jaeger-local builds from Jaeger's Go module (the same
# version), alone in the image as in the real one: /cmd/jaeger/jaeger-linux, JAEGER_LISTEN_HOST=0.0.0.0,
# uid 10001, its built-in all-in-one configuration. The query API is whole; the UI is a placeholder page
# (the module has no UI assets).
standin_jaeger() {
  local image="$1" hash="$2" version built binary dir
  version="${image##*:}"
  built="$("$ROOT/scripts/jaeger-local" version)"
  [[ $version == "$built" ]] || { echo "$image but scripts/jaeger-local builds $built: use one Jaeger version" >&2; return 1; }
  binary="$("$ROOT/scripts/jaeger-local" build)"
  dir="$CACHE/standins/jaeger"
  rm -rf "$dir" && mkdir -p "$dir/root/cmd/jaeger" "$dir/root/tmp"
  cp "$binary" "$dir/root/cmd/jaeger/jaeger-linux"
  chmod 1777 "$dir/root/tmp"
  tar -C "$dir/root" --numeric-owner -c . | docker import \
    --change 'ENV JAEGER_LISTEN_HOST=0.0.0.0' --change 'USER 10001' \
    --change 'ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]' --change "LABEL $STANDIN_LABEL=$hash" - "$image"
  rm -rf "$dir"
}
