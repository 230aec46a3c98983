#!/usr/bin/env bash
# The prepared GPU check: run on a machine with a CUDA GPU, from the repository root, in an
# environment installed as the README says. Prints the card, runs the gpu tests, then
# `nlp-lstm bench` (the configured model beside the textbook reference loop, same GPU,
# same batches) for wt2_medium (fp32 and bf16) and conll2000_chunk. A few minutes.
# Output goes to stdout and to $OUT (if set) for collection.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
export NLP_LSTM_DATA_MIRROR="${NLP_LSTM_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
python -m pytest -m gpu -q 2>&1 | tee "$out/gpu_tests.txt"

bench() {  # name, then overrides
  local name="$1"; shift
  nlp-lstm bench "$@" trainer.device=cuda --steps 50 --warmup 10 --json "$out/bench_$name.json" \
    2>&1 | tee "$out/bench_$name.txt"
}
bench wt2_medium_fp32 experiment=wt2_medium
bench wt2_medium_bf16 experiment=wt2_medium trainer.precision=bf16
bench wt2_gru_bf16 experiment=wt2_gru trainer.precision=bf16
bench conll2000_chunk experiment=conll2000_chunk
