#!/usr/bin/env bash
# The CPU benchmark set recorded in BENCHMARKS.md: `nlp-lstm bench` for the LM and tagging
# presets, each beside the textbook reference loop in the same process. Run from the
# repository root with nothing else running; JSON and text reports go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/bench_cpu}"
mkdir -p "$out"
export NLP_LSTM_DATA_MIRROR="${NLP_LSTM_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"

{ lscpu | grep -E "^Model name" || true; } | tee "$out/cpu.txt"
{ grep -o -w -E "amx_bf16|avx512_bf16|avx512f|avx2" /proc/cpuinfo || true; } | sort -u | tr '\n' ' ' | tee -a "$out/cpu.txt"; echo
# bf16 rows only where bf16 matrix products are not emulated (the same one-product screen
# that trainer.precision=auto uses): on an AVX2-only CPU one bf16 wt2_medium step takes
# about 40x an fp32 one, and `precision=auto` never picks it there.
bf16_native=$(python -c "import torch; from nlp_lstm.speed_choices import emulated_precisions as e; \
print('no' if e(torch.device('cpu'), ['fp32', 'bf16']) else 'yes')")

bench() {  # name, then overrides
  local name="$1"; shift
  if [[ "$name" == *bf16* && "$bf16_native" != yes ]]; then
    echo "$name: skipped, bf16 is emulated on this CPU" | tee "$out/$name.txt"
    return
  fi
  nlp-lstm bench "$@" --json "$out/$name.json" 2>&1 | tee "$out/$name.txt"
}
bench wt2_medium_fp32 experiment=wt2_medium trainer.precision=fp32 --steps 10 --warmup 2
bench wt2_medium_bf16 experiment=wt2_medium trainer.precision=bf16 --steps 10 --warmup 2
bench wt2_gru_fp32 experiment=wt2_gru trainer.precision=fp32 --steps 10 --warmup 2
bench wt2_gru_bf16 experiment=wt2_gru trainer.precision=bf16 --steps 10 --warmup 2
bench wt2_medium_adaptive_bf16 experiment=wt2_medium model.softmax=adaptive model.tie_weights=false \
  trainer.precision=bf16 --steps 10 --warmup 2
bench wt2_small_fp32 experiment=wt2_small trainer.precision=fp32 --steps 20 --warmup 3
bench conll2000_chunk_fp32 experiment=conll2000_chunk --steps 60 --warmup 5
bench conll2000_chunk_bf16 experiment=conll2000_chunk trainer.precision=bf16 --steps 60 --warmup 5
# the chunker without its auxiliary language-modelling cost (extra work per training sentence)
bench conll2000_chunk_nolm_fp32 experiment=conll2000_chunk model.lm_loss_weight=0 --steps 60 --warmup 5
