#!/bin/bash
# Train under Slurm, surviving time limits and preemption: Slurm sends SIGUSR1 two minutes
# before the limit, `cots train` finishes its step, writes a checkpoint and exits 138; this
# script then requeues the job, which resumes bit for bit where it stopped (docs/cluster.md).
#
#   sbatch examples/slurm_train.sh                                  # configs/le2012.toml
#   CONFIG=configs/demo.toml OUT=runs/demo sbatch examples/slurm_train.sh
#
# Tested without Slurm by tests/models/training/test_slurm_script.py (MPIEXEC and the
# SLURM_* variables set by the test, the same command line under the PyPI mpiexec).
#SBATCH --job-name=cots-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=cots-train-%j.log

set -u
CONFIG=${CONFIG:-configs/le2012.toml}
OUT=${OUT:-runs/$(basename "$CONFIG" .toml)}
MPIEXEC=${MPIEXEC:-mpiexec}   # the site's MPI launcher (mpiexec, or srun with PMI)
COTS=${COTS:-cots}

# ranks x threads = cores
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OPENBLAS_NUM_THREADS=$OMP_NUM_THREADS MKL_NUM_THREADS=$OMP_NUM_THREADS

# --resume on every start: the first finds no checkpoint and starts at step 0 (and says so).
"$MPIEXEC" -n "${SLURM_NTASKS:-2}" "$COTS" train "$CONFIG" --out "$OUT" --resume --quiet
status=$?

# 138 (SIGUSR1), 143 (SIGTERM): stopped cleanly with a checkpoint; go again if Slurm can.
if { [ "$status" -eq 138 ] || [ "$status" -eq 143 ]; } && [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "cots train stopped with a checkpoint (status $status): requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
