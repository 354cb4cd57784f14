#!/usr/bin/env bash
# Train the model zoo with the study's recipe, one model after another, resumably.
#   nohup bash scripts/zoo_train.sh [DATA] [RUNS] > ~/edgefer-runs/zoo.log 2>&1 &
# Re-running it resumes the unfinished run and skips the finished ones.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/fer2013.npz}
RUNS=${2:-$HOME/edgefer-runs}
MODELS=${ZOO_MODELS:-"mobilenetv3_small cnn mobilenetv3_large resnet50 vgg16"}
mkdir -p "$RUNS"
for m in $MODELS; do
  if grep -qs '"status": "finished"' "$RUNS/$m/state.json"; then
    echo "$(date -Is) $m: finished already"; continue
  fi
  echo "$(date -Is) $m: training (or resuming) into $RUNS/$m"
  .venv/bin/edgefer train --model "$m" --data "$DATA" --out "$RUNS/$m" || { echo "$(date -Is) $m: failed"; exit 1; }
done
echo "$(date -Is) zoo: all trained"
