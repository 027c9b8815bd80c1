#!/bin/bash
# Install the read-only checkout mounted at /src into /opt/hpcpar-venv.
# Copies it first (pip builds in-tree and /src is read-only); no network:
# --no-deps --no-build-isolation uses Debian's setuptools/wheel.
# Tolerant: exits 0 with a message if /src has no pyproject.toml/setup.py.
set -euo pipefail
SRC=${1:-/src}
if [ ! -f "$SRC/pyproject.toml" ] && [ ! -f "$SRC/setup.py" ]; then
    echo "[install-src] $SRC has no pyproject.toml/setup.py: skipping"; exit 0
fi
B=$(mktemp -d /tmp/hpcpar-src.XXXXXX)
tar -C "$SRC" --exclude=.git --exclude='*.egg-info' --exclude=build --exclude=dist \
    --exclude=__pycache__ --exclude=.venv --exclude=.pytest_cache -cf - . | tar -C "$B" -xf -
if /opt/hpcpar-venv/bin/pip install -q --no-deps --no-build-isolation --no-index "$B" ; then
    echo "[install-src] installed $(cd /tmp && /opt/hpcpar-venv/bin/python -c 'import hpcpar,sys; print(hpcpar.__file__)' 2>/dev/null || echo '?')"
else
    echo "[install-src] pip install failed" >&2; rm -rf "$B"; exit 1
fi
chown -R hpcpar:hpcpar /opt/hpcpar-venv
rm -rf "$B"
