#!/usr/bin/env bash
# The architecture comparison in docs/device_bench.md: every QAT-int8 and float32 artefact that
# `python -m edge_fer.report.quant_bench` left in RUN/bench/, benchmarked on this CPU (1 and 2 threads,
# FER2013 PrivateTest) and on the GPU path (SwiftShader: software GPU emulation, embedded sample),
# then put side by side by `edgefer compare`. Run on an otherwise idle machine:
#   bash scripts/device_bench_docs.sh RUN [RUN ...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/fer2013.npz}
OUT=${OUT:-docs/device_bench}
mkdir -p "$OUT"
models=()
for run in "$@"; do
  for f in "$run"/bench/*_float32.tflite "$run"/bench/*_int8_qat.tflite; do [ -f "$f" ] && models+=("$f"); done
done
.venv/bin/edgefer bench "${models[@]}" --device cpu --threads 1,2 --data "$DATA" --json "$OUT/cpu.json" | tee "$OUT/cpu.txt"
# On SwiftShader ResNet-50 and VGG-16 take over half a second per face: left out of the GPU run.
gpu_models=()
for f in "${models[@]}"; do [[ $(basename "$f") =~ ${GPU_SKIP:-^(resnet50|vgg16)_} ]] || gpu_models+=("$f"); done
VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$PWD/.venv/swiftshader/vk_swiftshader_icd.json} \
  .venv/bin/edgefer bench "${gpu_models[@]}" --device gpu --data embedded --min-seconds 1 --json "$OUT/gpu.json" \
  | tee "$OUT/gpu.txt" || true
.venv/bin/edgefer compare "$OUT/cpu.json" "$OUT/gpu.json" --out "$OUT"
