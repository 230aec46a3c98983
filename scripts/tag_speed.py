"""End-to-end tagging speed: `nlp-lstm tag` on CoNLL-2000 test repeated to >= 100,000
sentences (reading, encoding, batching, decoding, writing), beside the model's forward
pass alone on the same sentences, in one process run after the other.

    python scripts/tag_speed.py MODEL [--repeat 50] [--threads 2] [--precision auto]

MODEL: a chunker package (e.g. `python train.py experiment=conll2000_chunk
trainer.max_steps=1 hydra.run.dir=/tmp/chunker` gives one with the real shapes: speed does
not depend on the weights). Needs the corpus mirror ($NLP_LSTM_DATA_MIRROR) or a fetched
conll2000. Prints one JSON line; BENCHMARKS.md records it with the CPU (lscpu).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from nlp_lstm.data.fetch import default_data_dir, fetch_corpus
    from nlp_lstm.data.tag_files import conll_sentences, input_lines
    from nlp_lstm.data.tagging_batch import batch_indices, collate
    from nlp_lstm.inference import load

    test = fetch_corpus("conll2000", default_data_dir())["test"]
    block = Path(test).read_text(encoding="utf-8").strip("\n") + "\n\n"
    work = Path(tempfile.mkdtemp(prefix="tag_speed_"))
    source = work / "input.conll"
    source.write_text(block * args.repeat, encoding="utf-8")
    tagger = load(args.model, "cpu").set_precision(args.precision)
    sentences = list(conll_sentences(input_lines(str(source)), str(source), tagger.feature_columns))
    count = len(sentences)

    # 1. the command, end to end, in its own process (start-up and model loading included)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [
        sys.executable,
        "-m",
        "nlp_lstm.cli",
        "tag",
        args.model,
        str(source),
        "--input",
        "conll",
        "--output",
        str(work / "out.conll"),
        "--precision",
        args.precision,
        "--batch-size",
        str(args.batch_size),
        "--progress",
        "off",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    end_to_end = time.perf_counter() - start

    # 2. the forward pass alone: encoded, length-sorted batches prepared beforehand
    first = sentences[: min(count, 20_000)]
    encoded = [tagger._encode(s.words, s.features) for s in first]
    batches = [
        collate([encoded[i] for i in b])
        for b in batch_indices([len(e.words) for e in encoded], args.batch_size, shuffle=False)
    ]
    with torch.no_grad(), tagger._autocast():
        tagger.model(batches[0])
        start = time.perf_counter()
        for batch in batches:
            tagger.model(batch)
        forward = time.perf_counter() - start
    print(
        json.dumps(
            {
                "sentences": count,
                "tokens": sum(len(s.words) for s in sentences),
                "threads": args.threads,
                "precision": tagger.precision,
                "batch_size": args.batch_size,
                "end_to_end_sentences_per_sec": round(count / end_to_end, 1),
                "forward_only_sentences_per_sec": round(len(first) / forward, 1),
                "command": " ".join(command[2:]),
            }
        )
    )


if __name__ == "__main__":
    main()
