#!/usr/bin/env bash
# Site configuration the golden SGE script (tests/data/golden/sge.sh) asks for, added to the
# running container as an SGE manager (root):
#   * complex "gpu": INT, requestable, consumable per JOB (complex(5)); Grid Engine has no
#     built-in GPU resource, sites define one like this;
#   * cluster queue "debug" on this host: 4 slots (the golden asks `-pe smp 4`; the host has
#     2 cores, so this queue oversubscribes them), PE smp, complex_values gpu=2. It is created
#     DISABLED (qmod -d): `qsub -w v` still verifies against it, but nothing is ever dispatched
#     there, so the other tests keep all.q's 2 slots.
# Idempotent. Run with: docker/sge/exec --root bash /src/docker/sge/golden-site.sh
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if ! qconf -sc | grep -q '^gpu '; then
    qconf -sc > "$tmp/complex"
    echo "gpu                 gpu        INT         <=    YES         JOB        0        0" >> "$tmp/complex"
    qconf -Mc "$tmp/complex" >/dev/null
fi
if ! qconf -sql | grep -qx debug; then
    qconf -sq all.q | sed -E -e 's/^qname .*/qname                 debug/' \
        -e 's/^slots .*/slots                 4/' -e 's/^complex_values .*/complex_values        gpu=2/' \
        > "$tmp/debug.q"
    qconf -Aq "$tmp/debug.q" >/dev/null
fi
qmod -d 'debug@*' >/dev/null 2>&1 || true
echo "[sge/golden-site] complex gpu and disabled queue debug (4 slots, gpu=2) ready"
