#!/usr/bin/env bash
# The prepared GPU check, self-contained for the lent GPU machine (a machine without
# network whose image holds Python 3.12 with torch (CUDA), tensorboard, sentencepiece, tqdm,
# numpy, pytest... but not hydra-core, omegaconf, antlr4-python3-runtime, pytorch-crf or
# segtok, and which receives only the working tree, not the corpus mirror beside it).
#
# First, here (needs pip's index and the mirror; about 15 MiB, in ignored folders):
#     bash scripts/gpu_prepare.sh          # -> .whl/ (wheels), .gpu_data/ (wikitext2, conll2000)
# Then on the lent GPU machine, one call of the device tool's `run`:
#     command:   set -o pipefail; PYTHONUNBUFFERED=1 bash scripts/gpu_check.sh 2>&1 | tee $OUT/console.log
#     carry:     [".whl", ".gpu_data"]
#     timeout_s: 540
# (the checks stop at GPU_CHECK_BUDGET=450 s; the wheel install and the packing take
# seconds). To rerun a part on the same warm machine: GPU_CHECK_ONLY="gpu_tests profile"
# (names from the summary table) and a smaller GPU_CHECK_BUDGET.
#
# Rehearsal on a CPU (fresh venv with torch and only what the image lists; no CUDA):
#     python3 -m venv /tmp/gpu_rehearsal && /tmp/gpu_rehearsal/bin/pip install torch==2.13.0 \
#         tensorboard sentencepiece onnx matplotlib httpx prometheus-client numpy pytest pyyaml \
#         packaging regex tqdm
#     GPU_CHECK_REHEARSAL=1 OUT=/tmp/gpu_rehearsal_out PATH=/tmp/gpu_rehearsal/bin:$PATH \
#         bash scripts/gpu_check.sh
# With no CUDA the gpu tests are collected and skip, and the bench rows and the profile are
# skipped with a message; GPU_CHECK_REHEARSAL=1 runs those on the CPU instead, tiny (1 timed
# step per LM row, 2 per tagger row, 1 thread, bf16 rows in fp32: a CPU without native bf16
# emulates it), to exercise the imports, the configs and the carried corpora.
# Rehearsed 2026-12-06 here (Python 3.11, torch 2.13.0+cpu, 2 shared cores, no CUDA): every
# row ok in 4 min 12 s (versions 3 s, data 1 s, gpu_tests 6 s: 27 collected, all skipped
# for no CUDA; 6 bench rows 29-44 s each; profile 22 s); no GPU has run it yet.
#
# Runs every check even when one fails, each under its own time limit within the budget,
# then prints a summary table: the card, driver, CUDA and cuDNN versions; the gpu tests
# (`pytest -m gpu`: parity with the CPU, bf16 dtypes, weight drop, the bi-LM, the tagger,
# CRF/Viterbi, resume, determinism); `nlp-lstm bench` rows beside their references (bf16
# rows against a bf16 reference); a torch.profiler trace of LM and tagger training steps.
# In $OUT (at most a few files, as the device tool returns them): summary.md, logs.tar.gz
# (each check's output, the bench JSON, the profiler tables), traces.tar.gz (Chrome traces).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="${OUT:-/tmp/gpu_check_out}"
work="${GPU_CHECK_WORK:-/tmp/gpu_check}"   # every check's files, packed into $out at the end
budget="${GPU_CHECK_BUDGET:-450}"           # seconds for all the checks together
rehearsal="${GPU_CHECK_REHEARSAL:-0}"
only="${GPU_CHECK_ONLY:-}"
rm -rf "$work"
mkdir -p "$out" "$work"

# The image lacks some of the project's dependencies: install the carried wheels beside it.
if compgen -G ".whl/*.whl" > /dev/null; then
  site="${GPU_CHECK_SITE:-/tmp/site}"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH="$site:$root"
else
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
fi
# The corpora: the carried subset, else the mirror beside the checkout.
if [ -d .gpu_data ]; then
  export NLP_LSTM_DATA_MIRROR="${NLP_LSTM_DATA_MIRROR:-$root/.gpu_data}"
else
  export NLP_LSTM_DATA_MIRROR="${NLP_LSTM_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"
fi
export NLP_LSTM_DATA_DIR="${NLP_LSTM_DATA_DIR:-/tmp/gpu_check_data}"

cuda=$(python3 -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
device=cuda steps=(--steps 50 --warmup 10) tagger_steps=(--steps 60 --warmup 10) profile_args=() bench_limit=75
if [ "$cuda" != 1 ] && [ "$rehearsal" = 1 ]; then
  # bf16 on a CPU without native bf16 is emulated: a wt2_medium step took 87 s instead of 4.
  echo "no CUDA: rehearsal on the CPU, bench rows and profile tiny (1 timed step, 1 thread, fp32)"
  export OMP_NUM_THREADS=1
  device=cpu steps=(--steps 1 --warmup 1) tagger_steps=(--steps 2 --warmup 1) bench_limit=150
  profile_args=(--steps 1 --warmup 1 --precision fp32)
  budget="${GPU_CHECK_BUDGET:-900}"
elif [ "$cuda" != 1 ]; then
  echo "no CUDA: the gpu tests will skip, the bench rows and the profile are skipped"
fi

deadline=$((SECONDS + budget))
names=() results=()
record() { names+=("$1"); results+=("$2"); }
check() {  # name, time limit (s), then the command; its output goes to $work/<name>.txt, its tail here
  local name="$1" limit="$2"; shift 2
  if [ -n "$only" ] && [[ " $only versions " != *" $name "* ]]; then return; fi
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 20 ]; then
    echo "=== $name: skipped, the ${budget}s budget is spent"
    record "$name" "skipped (budget spent)"
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local start=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@" > "$work/$name.txt" 2>&1
  local rc=$?
  tail -n 12 "$work/$name.txt"
  case $rc in
    0) record "$name" "ok $((SECONDS - start))s" ;;
    124|137) record "$name" "FAILED (timed out at ${limit}s)" ;;
    *) record "$name" "FAILED (exit $rc) $((SECONDS - start))s" ;;
  esac
}
needs_cuda() {  # name: false (and a skipped row) when there is nothing to run it on
  if [ "$cuda" = 1 ] || [ "$rehearsal" = 1 ]; then return 0; fi
  if [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; then record "$1" "skipped (no CUDA)"; fi
  return 1
}
bench() {  # name, then overrides and flags
  local name="bench_$1"; shift
  needs_cuda "$name" || return
  [ "$device" = cuda ] || set -- "${@/#trainer.precision=bf16/trainer.precision=fp32}"
  # The overrides come first: nlp-lstm bench takes no override after its flags.
  check "$name" $bench_limit python3 -m nlp_lstm bench trainer.device=$device "$@" --json "$work/$name.json"
}

check versions 60 python3 - <<'PY'
import subprocess
import torch, hydra, omegaconf
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
print("hydra", hydra.__version__, "from", hydra.__file__, "| omegaconf", omegaconf.__version__)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                         capture_output=True, text=True).stdout)
else:
    print("no CUDA device")
PY
check data 90 bash -c "python3 -m nlp_lstm data fetch wikitext2 && python3 -m nlp_lstm data fetch conll2000"
# pytest-timeout is on the image: one hanging test then fails alone instead of eating the limit.
per_test=$(python3 -c "import pytest_timeout" 2>/dev/null && echo --timeout=100)
check gpu_tests 210 python3 -m pytest -m gpu -rfEs -p no:cacheprovider ${per_test:-} tests/test_gpu.py
bench wt2_medium_fp32 experiment=wt2_medium trainer.precision=fp32 "${steps[@]}"
bench wt2_medium_bf16 experiment=wt2_medium trainer.precision=bf16 --reference-precision same "${steps[@]}"
bench wt2_medium_adaptive_bf16 experiment=wt2_medium model.softmax=adaptive model.tie_weights=false \
  trainer.precision=bf16 --reference-precision same "${steps[@]}"
bench wt2_gru_bf16 experiment=wt2_gru trainer.precision=bf16 --reference-precision same "${steps[@]}"
bench conll2000_chunk_fp32 experiment=conll2000_chunk "${tagger_steps[@]}"
bench conll2000_chunk_bf16 experiment=conll2000_chunk trainer.precision=bf16 --reference-precision same \
  "${tagger_steps[@]}"
needs_cuda profile && check profile 90 python3 scripts/gpu_profile.py "$work" --device $device "${profile_args[@]}"

{
  echo "| check | result |"
  echo "|---|---|"
  for i in "${!names[@]}"; do echo "| ${names[$i]} | ${results[$i]} |"; done
  for f in "$work"/bench_*.json; do
    [ -f "$f" ] && python3 -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(sys.argv[1].rsplit('/',1)[1], r['device'], r['precision'], 'train %.2fx infer %.2fx' % (r['ratio.train'], r['ratio.infer']))" "$f"
  done
  [ "$cuda" = 1 ] || echo "(no CUDA here: $([ "$rehearsal" = 1 ] && echo "a CPU rehearsal, no GPU numbers" || echo "GPU checks skipped"))"
} > "$out/summary.md"
echo
cat "$out/summary.md"

# Pack the files for the trip back: the device tool returns a few files, 16 MiB each at most.
(cd "$work" && tar -czf "$out/logs.tar.gz" --exclude='trace_*.json' .)
if compgen -G "$work/trace_*.json" > /dev/null; then
  (cd "$work" && tar -czf "$out/traces.tar.gz" trace_*.json)
  if [ "$(stat -c %s "$out/traces.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then
    echo "traces.tar.gz is over 15 MiB: left out (the tables are in logs.tar.gz)"
    rm -f "$out/traces.tar.gz"
  fi
fi
ls -la "$out"

failed=0
for r in "${results[@]}"; do [[ "$r" != FAILED* ]] || failed=1; done
exit $failed
