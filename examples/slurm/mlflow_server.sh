#!/usr/bin/env bash
# The MLflow tracking server of a SLURM sweep (docs/slurm.md), on a host every node reaches:
# runs and metrics in PostgreSQL, artifacts (reports, plots, configs) in a folder the server
# owns; the jobs send both through the server, so they need no access to either.
#
#   export MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://USER:PASSWORD@db-host:5432/mlflow
#   MLFLOW_ARTIFACTS=/shared/imbsweep/mlflow-artifacts examples/slurm/mlflow_server.sh
#
# Then, wherever a sweep or a job runs: export MLFLOW_TRACKING_URI=http://THIS-HOST:5000
set -euo pipefail
: "${MLFLOW_BACKEND_STORE_URI:?export MLFLOW_BACKEND_STORE_URI: a database for MLflow (PostgreSQL)}"
PORT="${PORT:-5000}"
MLFLOW_ARTIFACTS="${MLFLOW_ARTIFACTS:-$PWD/mlflow-artifacts}"
# the Host headers the server answers (MLflow's default: localhost and private IPs, not host names)
ALLOWED_HOSTS="${ALLOWED_HOSTS:-localhost*,127.0.0.1*,$(hostname -s)*,$(hostname -f)*,10.*,192.168.*,172.1[6-9].*,172.2[0-9].*,172.3[01].*}"
exec "${MLFLOW:-mlflow}" server --host 0.0.0.0 --port "$PORT" --allowed-hosts "$ALLOWED_HOSTS" \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" --artifacts-destination "$MLFLOW_ARTIFACTS"
