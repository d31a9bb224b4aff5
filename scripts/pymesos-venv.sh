#!/usr/bin/env bash
# A virtual environment holding pymesos 0.3.15 unmodified, for the gateway's tests (docs/MESOS_API.md).
# pymesos needs http-parser, whose C extension does not build on Python 3.11; its pure-Python parser
# (http_parser/pyparser.py, which pymesos falls back to) is copied in instead, and pymesos's other needs
# (addict, six) are installed without their optional extras. kazoo is only for zk:// masters: left out.
set -euo pipefail
dir=${1:-build/pymesos-venv}
python=${PYTHON:-python3}
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import pymesos, http_parser.http" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check --no-deps pymesos==0.3.15 addict==2.4.0 six==1.16.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$dir/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: http-parser==0.9.0 -d "$tmp"
tar xzf "$tmp"/http-parser-0.9.0.tar.gz -C "$tmp"
site=$("$dir/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p "$site/http_parser"
cp "$tmp"/http-parser-0.9.0/http_parser/*.py "$site/http_parser/"
"$dir/bin/python" -c "import pymesos, http_parser.http; print('pymesos', pymesos.__file__)"
