#!/usr/bin/env bash
# Installs what the `mpi` cargo feature needs: Open MPI (runtime and headers) and
# libclang (rsmpi's build runs bindgen). Idempotent: does nothing when all is present,
# and runs `apt-get update` only when something has to be installed.
#
#   scripts/install-mpi.sh            # Open MPI + libclang
#   scripts/install-mpi.sh --bench    # also mpi4py (pip), for the CPython side of the MPI benchmarks
set -euo pipefail

packages=(openmpi-bin libopenmpi-dev libclang-dev)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "install-mpi: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "install-mpi: openmpi-bin, libopenmpi-dev and libclang-dev already installed"
fi

if [ "${1:-}" = "--bench" ]; then
    if python3 -c 'import mpi4py' 2>/dev/null; then
        echo "install-mpi: mpi4py already installed"
    else
        echo "install-mpi: pip install mpi4py"
        python3 -m pip install --quiet --break-system-packages 'mpi4py>=4' \
            || python3 -m pip install --quiet 'mpi4py>=4'
    fi
fi
