#!/usr/bin/env bash
# Prepares, on a machine with pip's package index and the corpus mirror, what
# scripts/gpu_check.sh needs on a GPU machine without network (whose image has Python 3.12,
# torch, tensorboard, sentencepiece, tqdm, numpy, pytest, pyyaml, packaging, regex, but not
# this project's other dependencies; the mirror beside the checkout does not travel):
#   .whl/       pure-Python wheels of the missing packages, pinned, one version each
#   .gpu_data/  the corpora the GPU check reads (wikitext2, conll2000), laid out as the
#               mirror is, for NLP_LSTM_DATA_MIRROR
# Both folders are ignored by git; name them in the run's carry list. About 15 MiB together.
#
#   bash scripts/gpu_prepare.sh            # NLP_LSTM_DATA_MIRROR, else ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
mirror="${NLP_LSTM_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"

# What the project (and the bench's textbook reference) imports that the image lacks, with
# every requirement of theirs that the image lacks too. Versions: the project's tested venv.
# seqeval is left out: only the CPU tests use it (and it ships no wheel).
wheels=(hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 pytorch-crf==0.7.2 segtok==1.5.11)
# Requirements of those wheels that the image already holds (KINDS.md's package list).
on_image="packaging pyyaml regex torch numpy"

rm -rf .whl
mkdir -p .whl
for spec in "${wheels[@]}"; do
  if ! "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$spec" 2>/dev/null; then
    # antlr4-python3-runtime 4.9.3 (omegaconf's pin) is published as a source archive only:
    # build its pure-Python wheel here.
    echo "no wheel published for $spec: building one"
    "$py" -m pip wheel -q --no-deps -w .whl "$spec"
  fi
done

"$py" - "$on_image" "${wheels[@]}" <<'PY'
"""Every wheel is pure Python (py3-none-any) or cp312, one per name, and every requirement
it has (markers evaluated for Python 3.12 on Linux) is carried or on the image."""
import re
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
on_image = {norm(n) for n in sys.argv[1].split()}
carried = {norm(spec.split("==")[0]) for spec in sys.argv[2:]}
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
names, problems = [], []
for wheel in sorted(Path(".whl").glob("*.whl")):
    name, version, *_, python, abi, platform = wheel.stem.split("-")
    names.append(norm(name))
    if (python, abi, platform) != ("py3", "none", "any") and python != "cp312":
        problems.append(f"{wheel.name}: not for CPython 3.12")
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                if norm(req.name) not in carried | on_image:
                    problems.append(f"{wheel.name} needs {req}: neither carried nor on the image")
    print(f"{wheel.stat().st_size / 1024:8.0f} KiB  {wheel.name}")
problems += [f"two wheels of {n}" for n in set(names) if names.count(n) > 1]
problems += [f"no wheel of {n}" for n in carried - set(names)]
if problems:
    sys.exit("\n".join(problems))
PY

# The corpora: whole files (the fetch code checks each one's sha256, so a cut file would
# not do), conll2000 in its gzip form (the fetch code takes `<file>.gz` from a mirror).
rm -rf .gpu_data
mkdir -p .gpu_data/wikitext2 .gpu_data/conll2000
cp "$mirror"/wikitext2/{train,valid,test}.txt .gpu_data/wikitext2/
cp "$mirror"/conll2000/{train,test}.txt.gz .gpu_data/conll2000/
chmod -R u+w .gpu_data
"$py" - <<'PY'
"""Each copied file holds the text the registry's checksum names."""
import gzip
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, ".")
from nlp_lstm.data.registry import get_corpus, mirror_dir_name  # noqa: E402

for name in ("wikitext2", "conll2000"):
    corpus = get_corpus(name)
    for cfile in corpus.files.values():
        path = Path(".gpu_data", mirror_dir_name(corpus), cfile.filename)
        data = path.read_bytes() if path.exists() else gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
        if hashlib.sha256(data).hexdigest() != cfile.sha256:
            sys.exit(f"{path}: checksum mismatch")
print("corpora verified against the registry")
PY

du -sh .whl .gpu_data
# What a run sends: the tracked and untracked-not-ignored files, plus the carried folders.
sent=$( { git ls-files -z --cached --others --exclude-standard; find .whl .gpu_data -type f -print0; } |
        du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
echo "a run with carry [.whl, .gpu_data] sends about $((sent / 1024 / 1024)) MiB (limit 64 MiB)"
[ "$sent" -lt $((60 * 1024 * 1024)) ] || { echo "too large to send"; exit 1; }
