#!/usr/bin/env bash
# The prepared GPU check: on a machine with a CUDA GPU, from the repository root, in an
# environment installed as the README says, with the corpus mirror beside the checkout
# (or NLP_LSTM_DATA_MIRROR set). About 6-8 minutes on an H100/H200-class card.
#
# Runs every check even when one fails, then prints a summary table: the card, driver,
# CUDA and cuDNN versions; the gpu tests (`pytest -m gpu`: parity with the CPU, bf16
# dtypes, weight drop, the bi-LM, the tagger, CRF/Viterbi, resume, determinism);
# `nlp-lstm bench` rows beside their references (bf16 rows against a bf16 reference);
# a torch.profiler trace of LM and tagger training steps. Everything lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
export NLP_LSTM_DATA_MIRROR="${NLP_LSTM_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"
export NLP_LSTM_DATA_DIR="${NLP_LSTM_DATA_DIR:-$out/data}"

names=() results=()
check() {  # name, then the command; its output goes to $out/<name>.txt and its tail here
  local name="$1"; shift
  local start=$SECONDS
  echo "=== $name: $*"
  "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  tail -n 12 "$out/$name.txt"
  names+=("$name")
  results+=("$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") $((SECONDS - start))s")
}
bench() {  # name, then overrides and flags
  local name="$1"; shift
  check "bench_$name" nlp-lstm bench "$@" trainer.device=cuda --json "$out/bench_$name.json"
}

check versions python - <<'PY'
import subprocess, torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                     capture_output=True, text=True).stdout)
PY
check gpu_tests python -m pytest -m gpu -q -p no:cacheprovider
bench wt2_medium_fp32 experiment=wt2_medium trainer.precision=fp32 --steps 50 --warmup 10
bench wt2_medium_bf16 experiment=wt2_medium trainer.precision=bf16 --reference-precision same --steps 50 --warmup 10
bench wt2_medium_adaptive_bf16 experiment=wt2_medium model.softmax=adaptive model.tie_weights=false \
  trainer.precision=bf16 --reference-precision same --steps 50 --warmup 10
bench wt2_gru_bf16 experiment=wt2_gru trainer.precision=bf16 --reference-precision same --steps 50 --warmup 10
bench conll2000_chunk_fp32 experiment=conll2000_chunk --steps 60 --warmup 10
bench conll2000_chunk_bf16 experiment=conll2000_chunk trainer.precision=bf16 --reference-precision same \
  --steps 60 --warmup 10
check profile python scripts/gpu_profile.py "$out"

echo
echo "| check | result |"
echo "|---|---|"
failed=0
for i in "${!names[@]}"; do
  echo "| ${names[$i]} | ${results[$i]} |"
  [[ "${results[$i]}" == ok* ]] || failed=1
done
for f in "$out"/bench_*.json; do
  [ -f "$f" ] && python -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(sys.argv[1].rsplit('/',1)[1], 'train %.2fx infer %.2fx' % (r['ratio.train'], r['ratio.infer']))" "$f"
done
exit $failed
