#!/usr/bin/env bash
# Build a Python base image with no registry: debootstrap a minimal Debian with python3 and venv, then
# `docker import` it. Cached by tag: an existing image is kept (delete it to rebuild).
set -euo pipefail
TAG="${1:-meseta-base:bookworm}"
MIRROR="${MESETA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "[base-image] $TAG exists"
  exit 0
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
ROOT="$(mktemp -d /var/tmp/meseta-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
echo "[base-image] debootstrap bookworm into $ROOT"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOT" "$MIRROR" >/dev/null
# A slim image, like python:*-slim: no apt lists, docs or caches.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/*
tar -C "$ROOT" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "[base-image] built $TAG"
