#!/usr/bin/env bash
# Build every image compose.yaml needs with no container registry:
#   meseta-base:bookworm   debootstrapped Debian with Python (compose/base-image.sh; cached)
#   meseta-infra:bookworm  RabbitMQ and etcd from Debian's packages (cached)
#   meseta-prometheus:bookworm  Prometheus from Debian's package (cached)
#   build/wheels           Meseta and its dependencies as wheels, installed offline into ...
#   ${MESETA_IMAGE:-meseta:local}  the one image of every Meseta service
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
IMAGE="${MESETA_IMAGE:-meseta:local}"
bash compose/base-image.sh meseta-base:bookworm
if ! docker image inspect meseta-infra:bookworm >/dev/null 2>&1; then
  echo "[images] building meseta-infra:bookworm (RabbitMQ, etcd)"
  docker build -q -t meseta-infra:bookworm -f compose/infra.Dockerfile compose >/dev/null
fi
if ! docker image inspect meseta-prometheus:bookworm >/dev/null 2>&1; then
  echo "[images] building meseta-prometheus:bookworm (Prometheus)"
  docker build -q -t meseta-prometheus:bookworm -f compose/prometheus.Dockerfile compose >/dev/null
fi
echo "[images] wheels into build/wheels"
rm -f build/wheels/meseta-*.whl
"$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir build/wheels --find-links build/wheels . 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
ls build/wheels/meseta-*.whl >/dev/null
echo "[images] building $IMAGE on meseta-base:bookworm"
docker build -q -t "$IMAGE" --build-arg BASE_IMAGE=meseta-base:bookworm -f compose/Dockerfile . >/dev/null
echo "[images] ready"
