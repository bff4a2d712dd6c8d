#!/usr/bin/env bash
# Issue 26's device check in one script, for a machine with one GPU and ~16 cores:
#   resnet  ResNet-32 training images/s on a 32x32 image folder (bench/image_folder.py), with and
#           without mixed precision and channels-last, at two batch sizes;
#   gpu     the demo tournament (make demo's 6 trained arms + the post-hoc arm, 20 epochs) with
#           TPA trials an arm at 4 and 12 workers on the GPU;
#   cpu     the same at 12 workers on the CPU alone.
# Every step is timed; the table is printed and written to OUT/summary.md.
#
#   bash bench/gpu_check.sh [OUT]                    # PARTS="resnet gpu cpu" TPA=24 by default
#   PARTS="resnet gpu" TPA=12 bash bench/gpu_check.sh /tmp/out
#   QUICK=1 bash bench/gpu_check.sh                  # tiny sizes on the CPU: tries the script anywhere
#
# PY names the Python with imbsweep installed (default .venv/bin/python; on a bare GPU machine,
# the one whose PYTHONPATH holds the carried wheels).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$(mktemp -d)}" && cd "${1:-.}" && pwd)"
PY="${PY:-$here/.venv/bin/python}"
PARTS="${PARTS:-resnet gpu cpu}"
if [ "${QUICK:-0}" = 1 ]; then
  TPA="${TPA:-1}"; EPOCHS=2; PER_CLASS=12; STEPS=2; BATCHES="16"; FEW=1; MANY=2; GPU=cpu; AMPS="false"
else
  TPA="${TPA:-24}"; EPOCHS=20; PER_CLASS=300; STEPS=30; BATCHES="128 512"; FEW=4; MANY=12; GPU=cuda; AMPS="false true"
fi
DEMO_ARMS=(~hydra.sweeper.arms.focal ~hydra.sweeper.arms.class_balanced ~hydra.sweeper.arms.ce_maxnorm
  ~hydra.sweeper.arms.ce_crt ~hydra.sweeper.arms.ce_lws ~hydra.sweeper.arms.ce_mixup
  ~hydra.sweeper.arms.ce_remix ~hydra.sweeper.posthoc_arms.ce_taunorm)  # as the Makefile's demo
summary="$out/summary.md"
{ echo "# bench/gpu_check.sh, $(date -u +%Y-%m-%dT%H:%MZ)"; echo
  echo "machine: $(nproc) cores; $(nvidia-smi -L 2>/dev/null | head -1 || echo 'no NVIDIA GPU')"; echo; } > "$summary"

if [[ " $PARTS " == *" resnet "* ]]; then
  echo "| ResNet-32, ${PER_CLASS}x10 images of 32x32 | amp | channels-last | batch | training steps, images/s | fit end to end, images/s |" >> "$summary"
  echo "| --- | --- | --- | --- | --- | --- |" >> "$summary"
  for bs in $BATCHES; do for amp in $AMPS; do for cl in false true; do
    log="$out/resnet_${bs}_${amp}_${cl}.log"
    "$PY" "$here/bench/image_folder.py" --per-class "$PER_CLASS" --epochs 3 --steps "$STEPS" \
      "trainer.device=$GPU" "trainer.amp=$amp" "trainer.channels_last=$cl" "trainer.batch_size=$bs" > "$log" 2>&1
    steps=$(sed -n 's/^training steps: \([0-9]*\) images.*/\1/p' "$log")
    whole=$(sed -n 's/^fit end to end: \([0-9]*\) training images.*/\1/p' "$log")
    echo "| | $amp | $cl | $bs | ${steps:-? (see $(basename "$log"))} | ${whole:-?} |" >> "$summary"
  done; done; done
  echo >> "$summary"
fi

tournament() {  # NAME WORKERS DEVICE: the demo tournament in its own study, timed
  local name=$1 workers=$2 device=$3 s e
  mkdir -p "$out/work" && cd "$out/work"
  s=$(date +%s.%N)
  "$PY" -m imbsweep sweep tricks "hydra.sweeper.study_name=$name" "hydra.sweeper.trials_per_arm=$TPA" \
    "hydra.sweeper.n_jobs=$workers" "trainer.epochs=$EPOCHS" "trainer.device=$device" "${DEMO_ARMS[@]}" \
    > "$out/$name.log" 2>&1
  e=$(date +%s.%N)
  printf "| %s | %s | %s | %s | %.1f s |\n" "$name" "$device" "$workers" "$((6 * TPA))" "$(echo "$e - $s" | bc)" >> "$summary"
  cd "$here"
}
if [[ " $PARTS " == *" gpu "* || " $PARTS " == *" cpu "* ]]; then
  echo "| demo tournament | device | workers | trained trials | wall |" >> "$summary"
  echo "| --- | --- | --- | --- | --- |" >> "$summary"
  if [[ " $PARTS " == *" gpu "* ]]; then
    tournament "gpu$FEW" "$FEW" "$GPU"
    tournament "gpu$MANY" "$MANY" "$GPU"
  fi
  if [[ " $PARTS " == *" cpu "* ]]; then
    tournament "cpu$MANY" "$MANY" cpu
  fi
fi
cat "$summary"
