#!/usr/bin/env bash
# Install what tests/test_slurm_cluster.py needs for a real single-node SLURM
# cluster: SLURM 22.05 + munge from Debian/Ubuntu packages, and the Snakemake
# SLURM executor plugin into the project's venv. Idempotent; needs root.
#
#   scripts/ci_slurm_prereqs.sh [path/to/venv]      (default: .venv)
#
# The test installs the packages itself under CI=true; running this first just
# moves the apt time out of the test. Services are NOT started (the test starts
# and stops its own daemons), and no config is written.
set -euo pipefail

VENV="${1:-.venv}"
PKGS=(slurmctld slurmd slurm-client munge)

if [ "$(id -u)" -ne 0 ]; then
    echo "ci_slurm_prereqs.sh: needs root (apt-get)" >&2
    exit 1
fi

missing=()
for b in slurmctld slurmd sinfo squeue sbatch srun scontrol scancel munged munge unmunge; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "ci_slurm_prereqs.sh: installing ${PKGS[*]} (missing: ${missing[*]})"
    # keep apt from starting the daemons as services (systemd hosts): the test
    # runs its own slurmctld/slurmd/munged and needs ports 6817/6818 free
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}"
else
    echo "ci_slurm_prereqs.sh: SLURM and munge already installed"
fi

if [ -x "$VENV/bin/pip" ]; then
    if ! "$VENV/bin/python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
        "$VENV/bin/pip" install -q snakemake-executor-plugin-slurm
    fi
    "$VENV/bin/python" -c "import snakemake_executor_plugin_slurm" \
        && echo "ci_slurm_prereqs.sh: snakemake-executor-plugin-slurm present in $VENV"
else
    echo "ci_slurm_prereqs.sh: no venv at $VENV; skipped the plugin (pip install 'convergent[slurm]')" >&2
fi
