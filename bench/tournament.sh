#!/usr/bin/env bash
# The science check through the product path: the tricks tournament (sweeps/tricks.yaml: 13 trained arms x
# 30 trials, MNIST-1D-LT ratio 100, cnn1d, 40 epochs, Hyperband within each arm, 2 workers), then
# each arm's best on the same 5 seeds and the paired comparison. Times each step.
#   bash bench/tournament.sh [WORKDIR] [extra sweep overrides...]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"; shift || true
mkdir -p "$work" && cd "$work"
bin="$here/.venv/bin"
s=$(date +%s)
"$bin/imbsweep" sweep tricks hydra.sweeper.n_jobs=2 "$@" > sweep.out 2> sweep.err
m=$(date +%s)
"$bin/imbsweep" compare tricks --reseed 5 > compare.out 2> compare.err
e=$(date +%s)
"$bin/imbsweep" compare tricks --format md --no-report > compare.md 2>> compare.err
echo "sweep $((m - s)) s, compare --reseed 5 $((e - m)) s, total $((e - s)) s (in $work)" | tee times.txt
