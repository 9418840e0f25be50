#!/usr/bin/env bash
# The compose files, run for real: `make e2e-docker` and `make e2e-images` call this script.
#
#   scripts/e2e/docker.sh run       (default) the stories of scripts/e2e/stories.py for every variant
#   scripts/e2e/docker.sh images    build the service images and the Pulsar image, write them as one
#                                   `docker save` archive to .cache/e2e/images.tar (reused while the
#                                   sources are unchanged); for `make e2e-k8s`
#   scripts/e2e/docker.sh clean     stop what an interrupted run left, remove .cache/e2e/engine (images, build cache)
#
# What it does, all under .cache/e2e/ and with nothing left running at the end:
#   1. installs what is missing: Debian's docker.io (dockerd, containerd, runc; no service is started),
#      debootstrap when a base image has to be made; builds Docker Compose v2 from the Go module proxy
#      when no `docker compose` v2.24.4+ is installed.
#   2. starts its OWN containerd and dockerd on their own sockets, data and exec roots under
#      .cache/e2e/engine (never the machine's engine, never /etc/docker/daemon.json), and stops them by
#      pid at the end, on failure and on Ctrl-C.
#   3. pulls every third-party image the Dockerfiles and compose files name; only an image that cannot
#      be pulled (no registry) is replaced by a local stand-in under its exact name (scripts/e2e/standins).
#      With registry access nothing is substituted. Grafana has no stand-in: where it cannot be pulled the
#      stories run without it and the summary says so.
#   4. builds the three service images with `docker compose build` from the project's Dockerfile,
#      unchanged, and runs the stories (scripts/e2e/stories.py) for the default stack (Apache Pulsar),
#      compose/lite.yml (embedded broker) and compose/macrometa.yml (against the embedded broker in its
#      Macrometa dialect, with a throw-away API key), and compose/lite.yml with compose/tracing.yml
#      (Jaeger v2: a message's trace holds the producer's and the consumer's spans).
# The last line is a one-line summary; the exit status is non-zero when any check failed.
#
# Environment (all optional):
#   E2E_VARIANTS="pulsar lite macrometa tracing"   which stacks to run
#   E2E_DEBIAN_MIRROR=http://deb.debian.org/debian   for debootstrap (stand-in base image only)
#   E2E_PULL_TIMEOUT=120                   seconds for one `docker pull` attempt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/e2e"
CACHE="$ROOT/.cache/e2e"
ENGINE="$CACHE/engine"          # containerd + dockerd state (images and build cache live here)
RUN_DIR="$ENGINE/run"           # sockets, pid files, exec roots
LOGS="$CACHE/logs"
export DOCKER_CONFIG="$CACHE/docker-config"   # our CLI config: compose plugin here, no user credentials
export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
# BuildKit through the engine's API; compose uses bake where buildx is installed and says it falls
# back to its own builder where it is not (Debian's CLI has no buildx).
export DOCKER_BUILDKIT=1
COMPOSE_VERSION=v2.40.3
COMPOSE_MIN=2.24.4               # `!reset` / `!override` in compose/*.yml
PULL_TIMEOUT="${E2E_PULL_TIMEOUT:-120}"
VARIANTS="${E2E_VARIANTS:-pulsar lite macrometa tracing}"
STANDIN_LABEL=org.streampair.e2e.standin   # value: hash of the recipe that made the stand-in
# The compose network's bridge gets a name of our own (scripts/e2e/compose.e2e.yml), one per checkout.
E2E_BRIDGE="spe2e$(printf %s "$ROOT" | sha256sum | cut -c1-8)"
export E2E_BRIDGE

T0=$SECONDS
say() { printf 'e2e-docker [%4ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf 'e2e-docker: error: %s\n' "$*" >&2; exit 1; }

# DOCKER: Debian's CLI when present (it builds without buildx), else whatever `docker` is on PATH.
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER="$(command -v docker || true)"; fi
docker() { "$DOCKER" "$@"; }

# ------------------------------------------------------------------------------------------ tools
apt_install() {
  say "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -qq)
  "${apt[@]}" update
  # docker.io's maintainer scripts would start the machine's dockerd where an init system runs: keep
  # services from starting (and leave an existing policy alone).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1; fi
  "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null || { ((made_policy)) && rm -f "$policy"; return 1; }
  ((made_policy)) && rm -f "$policy"
  return 0
}

ensure_engine_packages() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [[ ${#need[@]} -eq 0 ]] || apt_install "${need[@]}"
  [[ -x /usr/bin/docker ]] && DOCKER=/usr/bin/docker
  [[ -n "$DOCKER" ]] || die "no docker CLI after installing docker.io"
}

version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# Compose v2: an installed plugin when it is new enough, else built from the Go module proxy into
# our DOCKER_CONFIG (cached: about 7 minutes on 2 cores the first time).
compose_ok() {
  local have
  have="$(docker compose version --short 2>/dev/null || true)"
  [[ -n "$have" ]] && version_ge "${have#v}" "$COMPOSE_MIN"
}

ensure_compose() {
  local have
  if compose_ok; then
    say "docker compose $(docker compose version --short)"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build Docker Compose $COMPOSE_VERSION (or install compose v2 >= $COMPOSE_MIN)"
  say "building Docker Compose $COMPOSE_VERSION from the Go module proxy (several minutes, once)"
  local t=$SECONDS dir src="$CACHE/src/compose"
  (
    export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-modcacherw CGO_ENABLED=0
    dir="$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
    # `go install pkg@version` refuses compose (its go.mod has exclude directives): build in a copy
    rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$dir" "$src" && chmod -R u+w "$src"
    cd "$src"
    go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$DOCKER_CONFIG/cli-plugins/docker-compose" ./cmd
  ) >"$LOGS/compose-build.log" 2>&1 || { tail -n 30 "$LOGS/compose-build.log" >&2; die "building compose failed"; }
  have="$(docker compose version --short)"
  say "docker compose $have built in $((SECONDS - t)) s"
}

# ------------------------------------------------------------------------------------------ engine
CONTAINERD_PID="" DOCKERD_PID=""

# Our own containerd: dockerd would otherwise attach to the machine's /run/containerd/containerd.sock
# when one is running (another engine, a kubelet's), and we must not touch that.
write_engine_config() {
  mkdir -p "$ENGINE/containerd" "$ENGINE/docker" "$RUN_DIR"
  cat >"$ENGINE/containerd.toml" <<EOF
version = 2
root = "$ENGINE/containerd"
state = "$RUN_DIR/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$RUN_DIR/containerd.sock"
[ttrpc]
  address = "$RUN_DIR/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
  echo '{}' >"$ENGINE/daemon.json"   # never the machine's /etc/docker/daemon.json
}

pid_alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# Stale state of an earlier run that was killed hard (SIGKILL, power loss): its processes by the pid
# files, and mounts under our own roots.
reap_stale_engine() {
  local f pid
  for f in "$RUN_DIR/dockerd.launch.pid" "$RUN_DIR/dockerd.pid" "$RUN_DIR/containerd.pid"; do
    [[ -f $f ]] || continue
    pid="$(tr -dc 0-9 <"$f")"
    if pid_alive "$pid" && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$ENGINE"; then
      say "stopping a leftover engine process of an earlier run (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do pid_alive "$pid" || break; sleep 0.5; done
      pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  kill_our_shims
  awk -v p="$ENGINE/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

# containerd's shims outlive containerd by design; ours are the ones started with our socket.
kill_our_shims() {
  local p
  for p in /proc/[0-9]*; do
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "containerd-shim.* -address $RUN_DIR/containerd.sock"; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

# A daemon in a session of its own: Ctrl-C reaches this script (which takes the stacks down first and
# then stops the daemons by pid), not the daemons. The pid file gets the daemon's pid before it runs.
spawn() {  # pid file, log file, command...
  local pidfile="$1" log="$2"
  shift 2
  rm -f "$pidfile"
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >"$log" 2>&1 &
  for _ in $(seq 1 50); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  die "$1 did not start (log: $log)"
}

engine_start() {
  ensure_engine_packages
  reap_stale_engine
  write_engine_config
  local t=$SECONDS
  spawn "$RUN_DIR/containerd.pid" "$LOGS/containerd.log" containerd --config "$ENGINE/containerd.toml"
  CONTAINERD_PID="$(cat "$RUN_DIR/containerd.pid")"
  for _ in $(seq 1 100); do [[ -S "$RUN_DIR/containerd.sock" ]] && break; pid_alive "$CONTAINERD_PID" || break; sleep 0.1; done
  [[ -S "$RUN_DIR/containerd.sock" ]] || { tail -n 20 "$LOGS/containerd.log" >&2; die "containerd did not start"; }
  # --iptables=false --ip-forward=false: no changes to the machine's firewall or sysctls; containers
  # reach each other on compose networks, builds use the host network (see compose.e2e.yml).
  # --bridge=none: no default docker0 bridge (another engine's would clash); compose makes its own.
  spawn "$RUN_DIR/dockerd.launch.pid" "$LOGS/dockerd.log" dockerd --config-file "$ENGINE/daemon.json" \
    --data-root "$ENGINE/docker" --exec-root "$RUN_DIR/docker" \
    --pidfile "$RUN_DIR/dockerd.pid" --host "$DOCKER_HOST" \
    --containerd "$RUN_DIR/containerd.sock" \
    --storage-driver overlay2 --iptables=false --ip-forward=false --ip-masq=false --bridge=none
  DOCKERD_PID="$(cat "$RUN_DIR/dockerd.launch.pid")"
  for _ in $(seq 1 150); do
    docker version >/dev/null 2>&1 && break
    pid_alive "$DOCKERD_PID" || break
    sleep 0.2
  done
  docker version >/dev/null 2>&1 || { tail -n 30 "$LOGS/dockerd.log" >&2; die "dockerd did not start (log: $LOGS/dockerd.log)"; }
  say "engine up in $((SECONDS - t)) s: dockerd $(docker version -f '{{.Server.Version}}') pid $DOCKERD_PID, containerd pid $CONTAINERD_PID ($DOCKER_HOST)"
}

stop_pid() {  # pid, name, seconds before SIGKILL
  local pid="$1" name="$2" wait="$3"
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((wait * 5))); do pid_alive "$pid" || return 0; sleep 0.2; done
  say "$name (pid $pid) still running after ${wait}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

engine_stop() {
  [[ -n "$DOCKERD_PID$CONTAINERD_PID" ]] || return 0
  stop_pid "$DOCKERD_PID" dockerd 30
  stop_pid "$CONTAINERD_PID" containerd 10
  kill_our_shims
  rm -f "$RUN_DIR/dockerd.pid" "$RUN_DIR/dockerd.launch.pid" "$RUN_DIR/containerd.pid"
  DOCKERD_PID="" CONTAINERD_PID=""
  say "engine stopped"
}

# Where br_netfilter makes bridged frames go through iptables' FORWARD chain, a DROP there that is not
# ours (a local Kubernetes' pod isolation, a firewall with policy DROP) cuts containers of one compose
# network off from each other. While the stories run we allow traffic between the ports of our own
# bridge, nothing else, and remove that one rule at the end.
FORWARD_RULE=(-i "$E2E_BRIDGE" -o "$E2E_BRIDGE" -m comment --comment "streampair make e2e-docker" -j ACCEPT)
FORWARD_ADDED=0
forward_allow() {
  [[ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" == 1 ]] || return 0
  command -v iptables >/dev/null || return 0
  iptables -w 10 -C FORWARD "${FORWARD_RULE[@]}" 2>/dev/null && return 0
  iptables -w 10 -I FORWARD 1 "${FORWARD_RULE[@]}"
  FORWARD_ADDED=1
  say "bridged traffic passes iptables here (br_netfilter): FORWARD accepts $E2E_BRIDGE <-> $E2E_BRIDGE until the end"
}

forward_revoke() {
  ((FORWARD_ADDED)) || return 0
  while iptables -w 10 -C FORWARD "${FORWARD_RULE[@]}" 2>/dev/null; do
    iptables -w 10 -D FORWARD "${FORWARD_RULE[@]}" || break
  done
  FORWARD_ADDED=0
}

# ------------------------------------------------------------------------------------------ images
# Every third-party image the project names, found in the files themselves (so a version bump there
# is followed here, or fails loudly below).
third_party_images() {
  {
    sed -n 's/^# *syntax=\(.*\)$/\1/p' "$ROOT"/services/Dockerfile
    # FROM lines that name an image, not an earlier stage
    awk 'toupper($1) == "FROM" { if (!($2 in stage)) print $2; if (toupper($3) == "AS") stage[$4] = 1 }' \
      "$ROOT"/services/Dockerfile
    sed -n 's/^ *image: *\([^ #]*\).*/\1/p' "$ROOT"/docker-compose.yml "$ROOT"/compose/*.yml
  } | grep -v '^ghcr.io/streampair/' | sort -u
}

# A stand-in's recipe hash: its files and the versions it is made from. A changed recipe rebuilds it.
recipe_hash() {  # kind, image
  local kind="$1" image="$2"
  {
    echo "$image"
    declare -f "standin_$kind"
    [[ -d "$HERE/standins/$kind" ]] && find "$HERE/standins/$kind" -type f -print0 | sort -z | xargs -0 cat
    [[ $kind == pulsar ]] && cat "$ROOT/scripts/pulsar/pom.xml"
    [[ $kind == jaeger ]] && cat "$ROOT/scripts/jaeger-local"
    [[ $kind == python ]] && cat /usr/local/share/ca-certificates/*.crt 2>/dev/null
    # built FROM the Debian base: a new base makes them again
    [[ $kind == prometheus || $kind == pulsar ]] && docker image inspect -f '{{.Id}}' python:3.11-slim-bookworm
    true
  } | sha256sum | cut -c1-16
}

image_label() { docker image inspect -f "{{index .Config.Labels \"$STANDIN_LABEL\"}}" "$1" 2>/dev/null || true; }

kind_of() {
  case "$1" in
    docker/dockerfile:*) echo frontend ;;
    ghcr.io/astral-sh/uv:*) echo uv ;;
    python:3.11-slim-bookworm) echo python ;;
    prom/prometheus:*) echo prometheus ;;
    apachepulsar/pulsar:*) echo pulsar ;;
    jaegertracing/jaeger:*) echo jaeger ;;
    grafana/grafana:*) echo none ;;
    *) echo unknown ;;
  esac
}

STANDINS_USED=() MISSING_IMAGES=()

# Real image when it can be pulled (or was pulled before); a stand-in otherwise.
resolve_image() {
  local image="$1" kind label hash
  kind="$(kind_of "$image")"
  label="$(image_label "$image")"
  if docker image inspect "$image" >/dev/null 2>&1 && [[ -z $label ]]; then
    say "image $image: present (pulled before)"
    return
  fi
  if timeout "$PULL_TIMEOUT" "$DOCKER" pull -q "$image" >"$LOGS/pull.log" 2>&1; then
    say "image $image: pulled"
    return
  fi
  [[ $kind == unknown ]] && die "cannot pull $image and no stand-in recipe for it: $(tail -n1 "$LOGS/pull.log")"
  if [[ $kind == none ]]; then
    say "image $image: cannot be pulled ($(tail -n1 "$LOGS/pull.log" | cut -c1-160)); no stand-in: the stories run without it"
    MISSING_IMAGES+=("$image")
    return
  fi
  STANDINS_USED+=("$image")
  hash="$(recipe_hash "$kind" "$image")"
  if [[ $label == "$hash" ]]; then
    say "image $image: cannot be pulled; local stand-in (cached)"
    return
  fi
  say "image $image: cannot be pulled; making a local stand-in ($kind)"
  local t=$SECONDS
  "standin_$kind" "$image" "$hash" >"$LOGS/standin-$kind.log" 2>&1 ||
    { tail -n 30 "$LOGS/standin-$kind.log" >&2; die "stand-in $image failed (log: $LOGS/standin-$kind.log)"; }
  [[ "$(image_label "$image")" == "$hash" ]] || die "stand-in $image was not tagged"
  say "image $image: stand-in made in $((SECONDS - t)) s"
}

# Kinds of image a command does not need (Jaeger: only the tracing variant runs it; its stand-in needs a
# Jaeger build, minutes on a cold machine).
SKIP_KINDS=""

resolve_images() {
  local images image kind
  images="$(third_party_images)"
  # bases first: the other stand-ins are built FROM the python one
  for kind in frontend uv python prometheus pulsar jaeger none unknown; do
    [[ " $SKIP_KINDS " == *" $kind "* ]] && continue
    for image in $images; do
      [[ "$(kind_of "$image")" == "$kind" ]] && resolve_image "$image"
    done
  done
  return 0
}

# shellcheck source=scripts/e2e/standins.sh
source "$HERE/standins.sh"

# The service images, from services/Dockerfile through compose (the same build users get).
build_service_images() {
  local t=$SECONDS
  compose_cmd lite build --quiet producer consumer pulsar >"$LOGS/build.log" 2>&1 ||
    { tail -n 40 "$LOGS/build.log" >&2; die "building the service images failed (log: $LOGS/build.log)"; }
  say "service images built in $((SECONDS - t)) s: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' 'ghcr.io/streampair/*' | tr '\n' ',' | sed 's/,$//; s/,/, /g')"
}

# docker compose with the files of one variant, plus the test-only overrides of scripts/e2e.
compose_files() {  # variant -> the compose files, one a line
  local files=("$ROOT/docker-compose.yml")
  case "$1" in
    pulsar) ;;
    lite) files+=("$ROOT/compose/lite.yml" "$HERE/compose.e2e-lite.yml") ;;
    macrometa) files+=("$ROOT/compose/macrometa.yml" "$HERE/compose.gdn.yml") ;;
    tracing) files+=("$ROOT/compose/lite.yml" "$HERE/compose.e2e-lite.yml" "$ROOT/compose/tracing.yml"
      "$HERE/compose.e2e-tracing.yml") ;;
    *) die "unknown variant $1" ;;
  esac
  files+=("$HERE/compose.e2e.yml")
  printf '%s\n' "${files[@]}"
}

compose_cmd() {  # variant, compose arguments...
  local variant="$1" file args=()
  shift
  while read -r file; do args+=(-f "$file"); done < <(compose_files "$variant")
  [[ $variant == macrometa ]] && args+=(--env-file "$CACHE/macrometa.env")
  docker compose --project-directory "$ROOT" "${args[@]}" "$@"
}

# A throw-away Macrometa API key for the embedded broker (its Macrometa dialect): the services read it
# from the env file as users do with compose/macrometa.env. Never printed.
write_macrometa_env() {
  local key
  key="e2e_tenant.streampair-e2e.$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  (
    umask 077
    sed "s|^C8_API_KEY=.*|C8_API_KEY=$key|; s|^STREAM_URL=.*|STREAM_URL=http://gdn:8080|" \
      "$ROOT/compose/macrometa.env.example" >"$CACHE/macrometa.env"
  )
}

# ------------------------------------------------------------------------------------------ commands
CURRENT_VARIANT="" STORIES_PID=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $STORIES_PID ]] && pid_alive "$STORIES_PID"; then
    kill -TERM "$STORIES_PID" 2>/dev/null || true   # it stops its log followers and returns
    for _ in $(seq 1 50); do pid_alive "$STORIES_PID" || break; sleep 0.2; done
  fi
  if [[ -n $COMPOSE_BUILD_PID ]] && pid_alive "$COMPOSE_BUILD_PID"; then
    kill -TERM -- "-$COMPOSE_BUILD_PID" 2>/dev/null || true   # its own session: the go build too
  fi
  if [[ -n $CURRENT_VARIANT && -n $DOCKERD_PID ]] && pid_alive "$DOCKERD_PID"; then
    say "cleanup: docker compose down -v ($CURRENT_VARIANT)"
    compose_cmd "$CURRENT_VARIANT" down -v --remove-orphans --timeout 10 >>"$LOGS/cleanup.log" 2>&1 || true
  fi
  engine_stop
  forward_revoke
  exit "$status"
}

interrupted() { say "interrupted"; exit 130; }

# Tools, engine, base images and the service images. A compose build (cold machine) runs in its own
# session in the background while the stand-ins are made; cleanup ends that session by its id.
COMPOSE_BUILD_PID=""
prepare() {
  ensure_engine_packages
  if ! compose_ok; then
    setsid "${BASH_SOURCE[0]}" _compose &
    COMPOSE_BUILD_PID=$!
  fi
  engine_start
  resolve_images
  if [[ -n $COMPOSE_BUILD_PID ]]; then
    wait "$COMPOSE_BUILD_PID" || { COMPOSE_BUILD_PID=""; die "building Docker Compose failed"; }
    COMPOSE_BUILD_PID=""
  fi
  ensure_compose
  build_service_images
}

cmd_run() {
  local summary=() failed=0 variant line start
  start=$SECONDS
  [[ " $VARIANTS " == *" tracing "* ]] || SKIP_KINDS="jaeger"
  prepare
  write_macrometa_env
  local skip=()
  local image
  for image in "${MISSING_IMAGES[@]}"; do
    [[ $image == grafana/grafana:* ]] && skip+=(--skip grafana)
  done
  for variant in $VARIANTS; do
    CURRENT_VARIANT=$variant
    say "=== $variant"
    forward_allow   # each time: another program may load br_netfilter while we run
    mapfile -t files < <(compose_files "$variant")
    local env_args=() status=0
    [[ $variant == macrometa ]] && env_args=(--env-file "$CACHE/macrometa.env")
    # In the background and `wait`ed for: a trapped Ctrl-C interrupts `wait` at once (a foreground
    # child that handles SIGINT itself would make bash ignore it).
    E2E_DOCKER="$DOCKER" python3 "$HERE/stories.py" --variant "$variant" \
      --project-directory "$ROOT" --log "$LOGS/stories-$variant.log" "${env_args[@]}" "${skip[@]}" \
      -- "${files[@]}" >"$CACHE/result" &
    STORIES_PID=$!
    wait "$STORIES_PID" || status=$?
    STORIES_PID=""
    line="$(cat "$CACHE/result")"
    ((status == 130)) && interrupted
    if ((status == 0)); then
      summary+=("$line")
    else
      summary+=("${line:-$variant FAILED}")
      failed=1
    fi
    CURRENT_VARIANT=""
  done
  engine_stop
  forward_revoke
  local extra="" image
  for image in "${MISSING_IMAGES[@]}"; do extra+="; without ${image%%:*} (no image)"; done
  if [[ ${#STANDINS_USED[@]} -gt 0 ]]; then
    extra+="; local stand-ins for"
    for image in "${STANDINS_USED[@]}"; do extra+=" $(kind_of "$image")"; done
  fi
  local joined
  joined="$(printf '%s, ' "${summary[@]}")"
  echo "e2e-docker: ${joined%, } in $((SECONDS - start)) s$extra"
  return "$failed"
}

images_inputs_hash() {
  {
    cd "$ROOT"
    find services shared scripts/e2e/standins/pulsar scripts/pulsar/pom.xml uv.lock pyproject.toml .dockerignore \
      -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/tests/*' -print0 | sort -z | xargs -0 sha256sum
    sed -n 's/^ *image: *\(apachepulsar[^ #]*\).*/\1/p' docker-compose.yml
  } | sha256sum | cut -c1-16
}

cmd_images() {
  local out="$CACHE/images.tar" stamp="$CACHE/images.tar.inputs" hash pulsar_image
  hash="$(images_inputs_hash)"
  if [[ -f $out && -f $stamp && "$(cat "$stamp")" == "$hash" ]]; then
    say "images unchanged since $out was written ($(du -h "$out" | cut -f1)); nothing to do"
    return
  fi
  SKIP_KINDS="jaeger"   # not in the archive
  prepare
  pulsar_image="$(sed -n 's/^ *image: *\(apachepulsar[^ #]*\).*/\1/p' "$ROOT/docker-compose.yml")"
  local tags=(ghcr.io/streampair/producer:0.1.0 ghcr.io/streampair/consumer:0.1.0
    ghcr.io/streampair/broker:0.1.0 "$pulsar_image")
  docker save -o "$out.tmp" "${tags[@]}"
  mv "$out.tmp" "$out"
  echo "$hash" >"$stamp"
  engine_stop
  say "wrote $out ($(du -h "$out" | cut -f1)): ${tags[*]}"
}

main() {
  [[ $(id -u) == 0 ]] || die "needs root (it starts its own dockerd and containerd)"
  mkdir -p "$CACHE" "$LOGS" "$DOCKER_CONFIG"
  trap cleanup EXIT
  trap interrupted INT TERM
  case "${1:-run}" in
    run) cmd_run ;;
    images) cmd_images ;;
    _compose) trap - EXIT INT TERM; ensure_compose ;;   # internal: the background compose build of prepare
    clean) reap_stale_engine; rm -rf "$ENGINE"; say "removed $ENGINE" ;;
    -h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
    *) die "unknown command ${1}; see $0 --help" ;;
  esac
}

main "$@"
