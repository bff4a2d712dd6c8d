#!/usr/bin/env bash
# An imbsweep tournament on a SLURM cluster (docs/slurm.md). This script is the sweep itself:
# run it on a login node, or submit it (`sbatch examples/slurm/sweep.sh`) as a small job of its
# own. Its N_JOBS sweep processes each submit one trial at a time as a SLURM job through
# hydra-submitit-launcher (hydra/launcher=slurm: src/imbsweep/conf/hydra/launcher/slurm.yaml); they share the study through
# PostgreSQL and record through an MLflow tracking server (examples/slurm/mlflow_server.sh).
#SBATCH --job-name=imbsweep-sweep
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
#SBATCH --time=2-00:00:00
#
#   export OPTUNA_STORAGE=postgresql+psycopg2://USER:PASSWORD@db-host:5432/optuna
#   export MLFLOW_TRACKING_URI=http://mlflow-host:5000
#   N_JOBS=16 examples/slurm/sweep.sh hydra.launcher.partition=gpu hydra.sweeper.trials_per_arm=24
#
# Extra arguments are Hydra overrides. The same command again resumes the study; a job that
# SLURM kills, times out or loses with its node has its trial re-queued.
set -euo pipefail
: "${OPTUNA_STORAGE:?export OPTUNA_STORAGE: the PostgreSQL database every sweep process and job shares}"
: "${MLFLOW_TRACKING_URI:?export MLFLOW_TRACKING_URI: the MLflow tracking server every job records to}"
SWEEP="${SWEEP:-tricks}"          # a sweep: yours in ./sweeps/, or imbsweep's
N_JOBS="${N_JOBS:-8}"             # trials (SLURM jobs) at a time
LAUNCHER="${LAUNCHER:-slurm}"     # submitit_local: the same on this machine, without SLURM
IMBSWEEP="${IMBSWEEP:-imbsweep}"  # the command, from the environment every node shares
exec $IMBSWEEP sweep "$SWEEP" "hydra/launcher=$LAUNCHER" "hydra.sweeper.n_jobs=$N_JOBS" "$@"
