"""Corpora larger than memory: streamed reading, ids in a memory-mapped file, windows
read from the map. The 1 GB run is marked slow."""

import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers.corpora import TINY_MODEL, make_lines, write_lines
from helpers.paths import ROOT
from nlp_lstm.config import DataConfig, TokenizerConfig
from nlp_lstm.data.lm_batches import TrainStream, eval_batches
from nlp_lstm.data.lm_corpus import prepare_lm_corpus
from nlp_lstm.data.readers import iter_lines, read_lines
from nlp_lstm.errors import DataError


@pytest.mark.parametrize(
    "raw",
    [
        b"a b\nc\n",
        b"a b\nc",
        b"\xef\xbb\xbfbom line\r\nnext\r\n",
        b"x\n\n\ny\n",
        b"  \nlast line no newline",
    ],
)
def test_streamed_lines_equal_the_whole_file_reader(tmp_path, raw):
    path = tmp_path / "f.txt"
    path.write_bytes(raw)
    assert list(iter_lines(path)) == read_lines(path)


def test_streamed_reader_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nstill fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=r"bad.txt:3: not valid UTF-8 \(byte 0xff\)"):
        list(iter_lines(bad))
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"\n  \n")
    with pytest.raises(DataError, match="blank.txt: .* is empty"):
        list(iter_lines(blank, "data.train file"))
    with pytest.raises(DataError, match="missing.txt: no such data.train file"):
        list(iter_lines(tmp_path / "missing.txt", "data.train file"))


def test_cached_ids_are_a_memory_map_and_give_the_same_windows(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    files = {
        s: write_lines(d / f"{s}.txt", make_lines(n, seed))
        for s, n, seed in (("train", 300, 1), ("valid", 40, 2), ("test", 40, 3))
    }
    corpus = prepare_lm_corpus(
        DataConfig(name="text", **{s: str(p) for s, p in files.items()}),
        TokenizerConfig(kind="word"),
        tmp_path / "data",
        log=lambda *_: None,
    )
    train = corpus.ids["train"]
    assert isinstance(train, np.memmap) and train.dtype == np.int32
    assert not train.flags.writeable  # read-only: training can never corrupt the cache
    in_memory = np.asarray(corpus.tokenizer.encode_lines(read_lines(files["train"])), dtype=np.int64)
    assert train.tolist() == in_memory.tolist()
    assert corpus.stats["train"].tokens == len(in_memory)
    for reverse in (False, True):
        mapped, plain = (TrainStream(ids, corpus.tokenizer.eos_id, 4, reverse) for ids in (train, in_memory))
        for start in (0, 7, mapped.length - 3):
            for a, b in zip(mapped.window(start, 5), plain.window(start, 5)):
                assert a.dtype == b.dtype and a.tolist() == b.tolist()
    for (xa, ya), (xb, yb) in zip(
        eval_batches(corpus.ids["valid"], 1, 3, 8),
        eval_batches(np.asarray(corpus.ids["valid"], dtype=np.int64), 1, 3, 8),
    ):
        assert xa.tolist() == xb.tolist() and ya.tolist() == yb.tolist()


def write_big_corpus(path, target_bytes, seed=0):
    """~target_bytes of text: 100k distinct lines over a 5,000-word vocabulary, repeated
    in shuffled blocks."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(5000)]
    pool = [" ".join(rng.choices(words, k=rng.randint(5, 25))) + "\n" for _ in range(100_000)]
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target_bytes:
            rng.shuffle(pool)
            block = "".join(pool)
            out.write(block)
            written += len(block)
    return written


@pytest.mark.slow
def test_one_gigabyte_corpus_trains_with_bounded_memory(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    size = write_big_corpus(d / "train.txt", 1_050_000_000)
    assert size >= 1_000_000_000
    write_lines(d / "valid.txt", [" ".join(f"w{i}" for i in range(j, j + 10)) for j in range(200)])
    write_lines(d / "test.txt", [" ".join(f"w{i}" for i in range(j, j + 12)) for j in range(200)])
    overrides = [
        f"hydra.run.dir={tmp_path / 'run'}",
        "data=text",
        f"data.train={d / 'train.txt'}",
        f"data.valid={d / 'valid.txt'}",
        f"data.test={d / 'test.txt'}",
        *TINY_MODEL,
        "trainer.max_steps=20",
        "trainer.max_epochs=null",
        "trainer.max_time=null",
    ]
    # The training process reports its own peak RSS (tokenization and training included).
    wrapper = (
        "import resource, runpy, sys\n"
        f"sys.argv = ['train.py'] + {overrides!r}\n"
        "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
        "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "NLP_LSTM_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_mb = int(re.search(r"PEAK_RSS_KB (\d+)", proc.stderr).group(1)) / 1024
    rates = re.findall(r"encoded train: ([\d,]+) tokens in [\d.]+ s \(([\d,]+) tokens/s\)", proc.stderr + proc.stdout)
    assert rates, "the run logs its tokenization throughput"
    tokens, rate = (int(x.replace(",", "")) for x in rates[0])
    print(
        f"\n1 GB corpus: {tokens:,} train tokens, tokenized at {rate:,} tokens/s, peak RSS {peak_mb:,.0f} MB",
        file=sys.stderr,
    )
    assert tokens > 150_000_000
    assert peak_mb < 2048, f"peak RSS {peak_mb:.0f} MB"
