#!/usr/bin/env bash
# Briefly trained run of each builder, QAT-fine-tuned, for the quantisation benchmark (docs/benchmarks.md):
#   nohup bash scripts/brief_runs.sh [DATA] [RUNS] > ~/edgefer-runs/brief.log 2>&1 &
# then, on an otherwise idle machine:
#   .venv/bin/python -m edge_fer.report.quant_bench RUNS/brief/* --out docs/quantization.json --md docs/quantization.md
# Re-running it skips what is done. EPOCHS (default 1) and QAT_EPOCHS (default 1) are settable.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/fer2013.npz}
RUNS=${2:-$HOME/edgefer-runs}/brief
MODELS=${BRIEF_MODELS:-"mobilenetv3_large resnet50 vgg16"}
# VGG-16 as VGG-16-BN, into brief/vgg16_bn: plain VGG-16 stays at the majority class (docs/benchmarks.md).
declare -A FLAGS=([vgg16]="-o batch_norm=true") SUFFIX=([vgg16]="_bn")
mkdir -p "$RUNS"
for m in $MODELS; do
  run="$RUNS/$m${SUFFIX[$m]:-}"
  if ! grep -qs '"status": "finished"' "$run/state.json"; then
    echo "$(date -Is) $m: training ${EPOCHS:-1} epoch(s)"
    .venv/bin/edgefer train --model "$m" ${FLAGS[$m]:-} --data "$DATA" --epochs "${EPOCHS:-1}" --out "$run" || { echo "$(date -Is) $m: training failed"; exit 1; }
  fi
  if [ ! -f "$run/qat/qat.json" ]; then
    echo "$(date -Is) $m: QAT ${QAT_EPOCHS:-1} epoch(s)"
    .venv/bin/edgefer qat "$run" --epochs "${QAT_EPOCHS:-1}" --range-percentile "${QAT_RANGES:-minmax}" || { echo "$(date -Is) $m: QAT failed"; exit 1; }
  fi
done
echo "$(date -Is) brief runs: done"
