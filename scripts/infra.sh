#!/usr/bin/env bash
# Installs and starts everything Meseta needs on a fresh Debian machine (as root), idempotently:
# RabbitMQ (with the management API, used for per-test vhosts), etcd, dockerd, the offline task image,
# and the Python package in .venv. Every step checks first, so a second run costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${MESETA_INFRA_DIR:-/var/tmp/meseta-infra}
TASK_IMAGE=${MESETA_TASK_IMAGE:-meseta-task:latest}
mkdir -p "$RUN_DIR"
log() { printf '[infra] %s\n' "$*"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.5
  done
}

install_packages() {
  local missing=()
  command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v dockerd >/dev/null || missing+=(docker.io)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v curl >/dev/null || missing+=(curl)
  # The operations tests: compose (1.29 from Debian), an offline base image, a headless browser.
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v chromium >/dev/null || missing+=(chromium)
  # Image pulls (tests/e2e/lifecycle): the CNCF distribution registry, on loopback ports.
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$RUN_DIR/apt.log" 2>&1 \
      || { tail -20 "$RUN_DIR/apt.log"; exit 1; }
  fi
}

# The management plugin's metrics collector is the broker's largest cost with many queues (every agent
# has one): 10,000 idle agent queues with consumers took 16 % of a core with it, 0.5 % without. The API
# (vhosts, users, queue lists) works without it; Meseta's own figures come from its services.
BROKER_CONF=/etc/rabbitmq/rabbitmq.conf
# A throwaway CA and a server certificate for 127.0.0.1/localhost: the broker's TLS listener (5671), which
# tests/e2e/security/test_tls.py uses. Made on this machine, never shipped; production brings its own.
TLS_DIR=/etc/rabbitmq/meseta-tls
make_tls() {
  [[ -s "$TLS_DIR/server.pem" && -s "$TLS_DIR/ca.pem" ]] && return
  log "making a throwaway CA and the broker's TLS certificate in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=meseta throwaway CA" \
      -keyout ca.key -out ca.pem >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr \
      >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out server.pem >/dev/null 2>&1
    chmod 644 ca.pem server.pem server.key
  )
}

# Settings the running broker must have: the metrics collector off (below), bodies over 2 MiB refused by
# the broker itself (Meseta refuses over 1 MiB once they arrive; RabbitMQ's default is 128 MiB, a flood's
# worth of memory), and the TLS listener.
configure_rabbitmq() {
  mkdir -p "$(dirname "$BROKER_CONF")"
  make_tls
  grep -qs '^management_agent.disable_metrics_collector' "$BROKER_CONF" \
    || echo "management_agent.disable_metrics_collector = true" >>"$BROKER_CONF"
  grep -qs '^max_message_size' "$BROKER_CONF" || echo "max_message_size = 2097152" >>"$BROKER_CONF"
  grep -qs '^listeners.ssl.default' "$BROKER_CONF" || cat >>"$BROKER_CONF" <<CONF
listeners.ssl.default = 5671
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
}

start_rabbitmq() {
  if rabbitmq-diagnostics -q ping >/dev/null 2>&1 && ! rabbitmq-diagnostics -q listeners 2>/dev/null | grep -q 5671; then
    # Started by an older infra.sh, before the TLS listener and the message size bound: once.
    log "restarting rabbitmq-server with its TLS listener and message size bound"
    configure_rabbitmq
    rabbitmqctl -q stop >/dev/null 2>&1 || true
  fi
  if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    log "starting rabbitmq-server"
    configure_rabbitmq
    rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for 90 "rabbitmq" rabbitmq-diagnostics -q ping
  fi
  if ! curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null; then
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_for 60 "rabbitmq management API" curl -sf -u guest:guest http://127.0.0.1:15672/api/overview
  fi
}

start_etcd() {
  if ! curl -sf http://127.0.0.1:2379/health >/dev/null; then
    log "starting etcd"
    # One member: a short election timeout costs nothing and lets leases be as short as 1 s
    # (etcd's floor is 1.5 election timeouts), which bounds how fast a standby master takes over.
    nohup etcd --data-dir "$RUN_DIR/etcd" --listen-client-urls http://127.0.0.1:2379 \
      --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
      --heartbeat-interval 50 --election-timeout 500 \
      >"$RUN_DIR/etcd.log" 2>&1 &
    wait_for 30 "etcd" curl -sf http://127.0.0.1:2379/health
  fi
}

# dockerd resolves GPU device requests through an NVIDIA driver that it registers only when
# nvidia-container-runtime-hook is on its PATH. Where the real NVIDIA toolkit is absent, a no-op hook on
# dockerd's PATH (not the system's) lets the agent's GPU path run for real against the engine: device
# requests are recorded and containers start with NVIDIA_VISIBLE_DEVICES set. A host with the toolkit
# keeps its own hook, and GPUs.
GPU_SHIM_DIR="$RUN_DIR/gpu-shim"
install_gpu_shim() {
  command -v nvidia-container-runtime-hook >/dev/null && return 0
  mkdir -p "$GPU_SHIM_DIR"
  cat >"$GPU_SHIM_DIR/nvidia-container-runtime-hook" <<'HOOK'
#!/bin/sh
# Meseta test double for the NVIDIA prestart hook on a host with no NVIDIA stack: accept and do nothing.
cat >/dev/null
exit 0
HOOK
  chmod +x "$GPU_SHIM_DIR/nvidia-container-runtime-hook"
}

gpu_requests_work() {
  docker run --rm --gpus '"device=0"' "$TASK_IMAGE" true >/dev/null 2>&1
}

start_dockerd() {
  if docker info >/dev/null 2>&1; then
    # A dockerd started without the hook refuses GPU device requests: restart it with the hook.
    if [ -x "$GPU_SHIM_DIR/nvidia-container-runtime-hook" ] && docker image inspect "$TASK_IMAGE" >/dev/null 2>&1 \
        && ! gpu_requests_work; then
      log "restarting dockerd so it accepts GPU device requests"
      pkill -x dockerd || true
      wait_for 30 "dockerd to stop" sh -c '! pgrep -x dockerd'
    else
      return 0
    fi
  fi
  log "starting dockerd"
  PATH="$GPU_SHIM_DIR:$PATH" nohup dockerd >"$RUN_DIR/dockerd.log" 2>&1 &
  wait_for 60 "dockerd" docker info
}

build_task_image() {
  # No registry is reachable: the task image is a busybox-static rootfs imported as an image, by the
  # same code a pip-installed user runs (`meseta task-image`).
  if ! docker image inspect "$TASK_IMAGE" >/dev/null 2>&1; then
    log "building $TASK_IMAGE from busybox-static"
    .venv/bin/meseta task-image --image "$TASK_IMAGE" >/dev/null
  fi
}

# Two registries on loopback ports (Docker pulls from 127.0.0.0/8 over plain HTTP): an open one, and one
# behind htpasswd credentials. Each holds the task image as meseta-task:latest. The tests push their own
# repositories next to it. Debian's package ships a systemd unit; without systemd they start here.
REGISTRY_PORT=${MESETA_REGISTRY_PORT:-5005}
AUTH_REGISTRY_PORT=${MESETA_AUTH_REGISTRY_PORT:-5006}
REGISTRY_USER=meseta
REGISTRY_PASSWORD=meseta-registry-password  # a test fixture on a loopback port, not a secret
start_registry() {  # start_registry NAME PORT AUTH(yes|no)
  local name=$1 port=$2 auth=$3 dir="$RUN_DIR/registry-$1"
  if curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then return 0; fi
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [ "$auth" = yes ]; then
      python3 - "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$dir/htpasswd" <<'PY'
import sys, warnings
warnings.simplefilter("ignore")
import crypt
print(f"{sys.argv[1]}:{crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH))}")
PY
      echo "auth: {htpasswd: {realm: meseta, path: $dir/htpasswd}}"
    fi
  } >"$dir/config.yml"
  log "starting the $name registry on 127.0.0.1:$port"
  nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  wait_for 30 "the $name registry" curl -s -o /dev/null "http://127.0.0.1:$port/v2/"
}

push_task_image() {  # push_task_image PORT [USER PASSWORD]
  local ref="127.0.0.1:$1/meseta-task:latest" code
  code=$(curl -s -o /dev/null -w '%{http_code}' ${2:+-u "$2:$3"} "http://127.0.0.1:$1/v2/meseta-task/manifests/latest" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json')
  [ "$code" = 200 ] && return 0
  log "pushing $TASK_IMAGE to 127.0.0.1:$1"
  docker tag "$TASK_IMAGE" "$ref"
  if [ -n "${2:-}" ]; then
    # A login of its own, gone afterwards: no pull on this host may find these credentials.
    local config; config=$(mktemp -d)
    printf '%s' "$3" | docker --config "$config" login -u "$2" --password-stdin "127.0.0.1:$1" >/dev/null 2>&1
    docker --config "$config" push -q "$ref" >/dev/null
    rm -rf "$config"
  else
    docker push -q "$ref" >/dev/null
  fi
  docker rmi "$ref" >/dev/null
}

install_python() {
  local stamp=.venv/.meseta-installed sum
  sum=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    log "installing the meseta package into .venv"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -c "import meseta.master, meseta.allocator, meseta.agent, meseta.sdk"
    echo "$sum" >"$stamp"
  fi
}

if [ "${1:-}" = peers ]; then  # `make bench-peers`: Slurm and munge besides (Swarm is docker.io's own)
  peers=()
  command -v slurmctld >/dev/null || peers+=(slurm-wlm)
  command -v munged >/dev/null || peers+=(munge)
  if ((${#peers[@]})); then
    log "installing ${peers[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${peers[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${peers[@]}" >/dev/null; }
  fi
  log "ready: slurm-wlm, munge (bench/peers.py configures and starts them itself)"
  exit 0
fi

if [ "${1:-}" = python ]; then  # `make venv`: the package alone, for unit tests and linters
  install_python
  log "ready: .venv"
  exit 0
fi

install_packages
start_rabbitmq &
rabbitmq_job=$!
start_etcd
install_gpu_shim
start_dockerd
install_python
build_task_image
start_registry open "$REGISTRY_PORT" no
start_registry auth "$AUTH_REGISTRY_PORT" yes
push_task_image "$REGISTRY_PORT"
push_task_image "$AUTH_REGISTRY_PORT" "$REGISTRY_USER" "$REGISTRY_PASSWORD"
# Wait for RabbitMQ's start only: a bare `wait` would also wait for the daemons started above.
wait "$rabbitmq_job"
log "ready: rabbitmq :5672 (management :15672), etcd :2379, dockerd, image $TASK_IMAGE, registries :$REGISTRY_PORT :$AUTH_REGISTRY_PORT, .venv"
