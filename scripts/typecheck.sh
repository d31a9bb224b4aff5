#!/usr/bin/env bash
# mypy cannot follow setuptools' editable import hook for the folder mapping (meseta.* -> services/, sdk/),
# so it checks a tree of symlinks laid out as the installed package is.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck/meseta
rm -rf build/typecheck && mkdir -p "$tree"
for entry in services/*; do ln -s "$PWD/$entry" "$tree/$(basename "$entry")"; done
ln -s "$PWD/sdk" "$tree/sdk"
ln -s "$PWD/examples" "$tree/examples"
MYPYPATH=build/typecheck .venv/bin/python -m mypy -p meseta "$@"
MYPYPATH=build/typecheck:bench .venv/bin/python -m mypy --explicit-package-bases bench
