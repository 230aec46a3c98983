#!/usr/bin/env bash
# The prepared GPU check: run on a machine with a CUDA GPU, from the repository root, in an
# environment installed as the README says. Prints the card, runs the gpu tests, then times
# short real trainings on the GPU. Output goes to stdout and to $OUT (if set) for collection.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
export NLP_LSTM_DATA_MIRROR="${NLP_LSTM_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
python -m pytest -m gpu -q 2>&1 | tee "$out/gpu_tests.txt"

# Throughput of the LM presets on the GPU (a few hundred steps each).
for preset in wt2_small wt2_medium; do
  python train.py experiment="$preset" trainer.device=cuda trainer.max_steps=300 \
    trainer.limit_eval_batches=20 trainer.progress_bar=false logger.tensorboard=false \
    hydra.run.dir="$out/$preset" > "$out/$preset.log" 2>&1
  python -c "import json,sys; m=json.load(open('$out/$preset/metrics.json')); print('$preset', 'tokens/s', round(m['train']['tokens_per_sec']))" | tee -a "$out/summary.txt"
done
