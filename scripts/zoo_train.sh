#!/usr/bin/env bash
# Train the model zoo with the study's recipe, one model after another, resumably; then
# QAT-fine-tune (3 epochs; activation ranges chosen on validation with `--range-percentile auto`,
# QAT_RANGES overrides) and export each to int8 TFLite + ONNX (forced, so the zoo table can report
# agreement below the 98% gate instead of having no artefact):
#   nohup bash scripts/zoo_train.sh [DATA] [RUNS] > ~/edgefer-runs/zoo.log 2>&1 &
# Re-running it resumes the unfinished step and skips the finished ones.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/fer2013.npz}
RUNS=${2:-$HOME/edgefer-runs}
MODELS=${ZOO_MODELS:-"mobilenetv3_small cnn mobilenetv3_large resnet50 vgg16"}
# The study's recipe for every model, except VGG-16 gets BatchNorm: plain VGG-16 does not leave the
# majority class from scratch with Adam 1e-3 (docs/benchmarks.md, README "Architectures").
declare -A FLAGS=([vgg16]="-o batch_norm=true")
mkdir -p "$RUNS"
for m in $MODELS; do
  if grep -qs '"status": "finished"' "$RUNS/$m/state.json"; then
    echo "$(date -Is) $m: trained already"
  else
    echo "$(date -Is) $m: training (or resuming) into $RUNS/$m"
    .venv/bin/edgefer train --model "$m" ${FLAGS[$m]:-} --data "$DATA" --out "$RUNS/$m" || { echo "$(date -Is) $m: failed"; exit 1; }
  fi
  if [ ! -f "$RUNS/$m/qat/qat.json" ]; then
    echo "$(date -Is) $m: QAT ${QAT_EPOCHS:-3} epoch(s)"
    .venv/bin/edgefer qat "$RUNS/$m" --epochs "${QAT_EPOCHS:-3}" --range-percentile "${QAT_RANGES:-auto}" || { echo "$(date -Is) $m: QAT failed"; exit 1; }
  fi
  if [ ! -f "$RUNS/$m/export/export_report.json" ]; then
    echo "$(date -Is) $m: int8 export"
    .venv/bin/edgefer export "$RUNS/$m" --int8 --force || { echo "$(date -Is) $m: export failed"; exit 1; }
  fi
done
echo "$(date -Is) zoo: all trained"
