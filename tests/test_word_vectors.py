"""Pretrained word vectors: every file format (gzipped or not), lookup with case fallback,
the vocabulary they extend, coverage, malformed files, a tagger package that keeps the
rows it uses and names its source, and `nlp-lstm vectors` round trips."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct

import numpy as np
import pytest
import torch

import nlp_lstm
from helpers.runs import run_cli, run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus
from nlp_lstm.data.word_vectors import detect_format, read_word_vectors
from nlp_lstm.errors import DataError

WORDS = ["the", "The", "cat", "Paris", "dog", "river", "unused", "zebra"]  # most frequent first


def table(dim: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {w: rng.standard_normal(dim).astype(np.float32) for w in WORDS}


def write_text(path, vectors, header: bool, gz: bool = False, trailing_space: bool = False):
    dim = len(next(iter(vectors.values())))
    lines = [f"{len(vectors)} {dim}"] if header else []
    lines += [
        w + " " + " ".join(repr(float(x)) for x in v) + (" " if trailing_space else "") for w, v in vectors.items()
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if gz:
        _gz(path, data)
    else:
        path.write_bytes(data)
    return path


def _gz(path, data):
    with gzip.open(path, "wb") as handle:
        handle.write(data)


def write_binary(path, vectors, gz: bool = False):
    dim = len(next(iter(vectors.values())))
    data = f"{len(vectors)} {dim}\n".encode()
    for w, v in vectors.items():
        data += w.encode("utf-8") + b" " + struct.pack(f"<{dim}f", *v.tolist()) + b"\n"
    if gz:
        _gz(path, data)
    else:
        path.write_bytes(data)
    return path


FORMATS = [
    ("glove", "vectors.txt", False, False),
    ("glove", "vectors.txt.gz", False, True),
    ("word2vec_text", "vectors.vec", True, False),
    ("word2vec_text", "vectors.vec.gz", True, True),
    ("word2vec_binary", "vectors.bin", None, False),
    ("word2vec_binary", "vectors.bin.gz", None, True),
]


def write_any(tmp_path, fmt, name, header, gz, vectors):
    path = tmp_path / name
    if fmt == "word2vec_binary":
        return write_binary(path, vectors, gz)
    return write_text(path, vectors, header, gz, trailing_space=fmt == "word2vec_text")


@pytest.mark.parametrize("fmt,name,header,gz", FORMATS)
def test_every_format_is_detected_and_read_exactly(tmp_path, fmt, name, header, gz):
    vectors = table()
    path = write_any(tmp_path, fmt, name, header, gz, vectors)
    assert detect_format(path) == fmt
    loaded = read_word_vectors(path, ["cat", "dog", "missing"], fmt="auto")
    assert loaded.format == fmt and loaded.dim == 4 and loaded.rows_read == len(WORDS)
    assert set(loaded.vectors) == {"cat", "dog"}
    for word in ("cat", "dog"):
        np.testing.assert_array_equal(loaded.vectors[word], vectors[word])  # float32 exact: repr round-trips
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    forced = read_word_vectors(path, ["cat"], fmt=fmt)
    np.testing.assert_array_equal(forced.vectors["cat"], vectors["cat"])


def test_lookup_is_exact_first_then_the_most_frequent_case_variant(tmp_path):
    vectors = table()
    path = write_text(tmp_path / "v.txt", vectors, header=False)
    loaded = read_word_vectors(path, ["The", "the", "paris", "CAT", "River"])
    np.testing.assert_array_equal(loaded.vectors["The"], vectors["The"])  # exact, though "the" comes first
    np.testing.assert_array_equal(loaded.vectors["the"], vectors["the"])
    np.testing.assert_array_equal(loaded.vectors["paris"], vectors["Paris"])  # case fallback
    np.testing.assert_array_equal(loaded.vectors["CAT"], vectors["cat"])
    np.testing.assert_array_equal(loaded.vectors["River"], vectors["river"])
    # Lowercased vocabulary (model.lowercase_words): "the" matches "the" exactly, not "The".
    lowered = read_word_vectors(path, ["the"], lowercase=True)
    np.testing.assert_array_equal(lowered.vectors["the"], vectors["the"])


def test_the_files_most_frequent_words_join_the_vocabulary(tmp_path):
    vectors = table()
    path = write_text(tmp_path / "v.txt", vectors, header=False)
    loaded = read_word_vectors(path, ["cat"], max_new=4, lowercase=True)
    # The first four rows: the, The (-> "the" again when lowercasing), cat (known), Paris -> paris.
    assert loaded.new_words == ["the", "paris"]
    np.testing.assert_array_equal(loaded.vectors["paris"], vectors["Paris"])
    np.testing.assert_array_equal(loaded.vectors["the"], vectors["the"])
    cased = read_word_vectors(path, ["cat"], max_new=4)
    assert cased.new_words == ["the", "The", "Paris"]


@pytest.mark.parametrize(
    "content,where,message",
    [
        ("the 1 2 3\ncat 1 2\n", ":2:", "expected a word and 3 numbers, found 3 field(s)"),
        ("the 1 2 3\ncat 1 x 3\n", ":2:", "'x' is not a number"),
        ("the 1 2 3\ncat 1 nan 3\n", ":2:", "holds NaN or infinity"),
        ("3 3\nthe 1 2 3\ncat 1 2 3\n", "", "the header announces 3 vectors, the file holds 2"),
        ("2 3\nthe 1 2 3\ncat 1 2\n", ":3:", "expected a word and 3 numbers"),
    ],
)
def test_a_malformed_file_is_one_error_naming_file_and_line(tmp_path, content, where, message):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_word_vectors(path, ["the", "cat"])
    assert str(info.value).startswith(f"{path}{where}") and message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt,name,header,gz", [f for f in FORMATS if f[0] != "word2vec_binary"])
def test_a_byte_order_mark_is_not_part_of_the_header_or_the_first_word(tmp_path, fmt, name, header, gz):
    """Editors on Windows write a BOM: it must neither hide the word2vec header (the file
    was read as GloVe of dimension 1) nor join the first, most frequent GloVe word."""
    vectors = table()
    path = write_text(tmp_path / name, vectors, header, trailing_space=fmt == "word2vec_text")
    data = b"\xef\xbb\xbf" + path.read_bytes()
    if gz:
        path = tmp_path / name
        _gz(path, data)
    else:
        path.write_bytes(data)
    assert detect_format(path) == fmt
    loaded = read_word_vectors(path, ["the", "cat"], max_new=2)
    assert (loaded.format, loaded.dim, loaded.rows_read) == (fmt, 4, len(WORDS))
    assert loaded.new_words == ["The"]  # "the" is found as itself, not as "\ufeffthe"
    for word in ("the", "cat", "The"):
        np.testing.assert_array_equal(loaded.vectors[word], vectors[word])


@pytest.mark.parametrize(
    "content,where,message",
    [
        # word2vec text words hold no spaces: one field too many is an error, not the word "cat 4".
        (
            "2 3\nthe 1 2 3\ncat 4 1 2 3\n",
            ":3:",
            "expected a word and 3 numbers (the header's dimension), found 5 fields",
        ),
        ("2 3\nthe 1 2 3\ncat  1 2 3\n", ":3:", "an empty field (two spaces in a row"),
        # A header whose dimension is too small: every row would have become a word "the 1 ...".
        (
            "2 2\nthe 1 2 3\ncat 1 2 3\n",
            ":2:",
            "expected a word and 2 numbers (the header's dimension), found 4 fields",
        ),
        # GloVe: a doubled space, between the word and its vector or inside the vector.
        ("the 1 2 3\ncat  1 2 3\n", ":2:", "an empty field (two spaces in a row"),
        ("the 1 2 3\ncat 1  2 3\n", ":2:", "an empty field (two spaces in a row"),
        (" the 1 2 3\ncat 1 2 3\n", ":1:", "an empty field (two spaces in a row, or a space at the start)"),
    ],
)
def test_a_row_with_misplaced_fields_is_an_error_not_a_new_word(tmp_path, content, where, message):
    """With model.word_vectors_max such rows joined the vocabulary as words like 'cat 4'."""
    path = tmp_path / "bad.vec"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_word_vectors(path, [], max_new=10)
    assert str(info.value).startswith(f"{path}{where}") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_glove_words_with_spaces_as_in_840B_are_read_whole(tmp_path):
    """GloVe 840B holds a few words with single spaces inside (". . .", "at name@domain.com"):
    the word is everything before the last `dim` fields."""
    vectors = {
        "the": np.array([1, 2, 3], np.float32),
        ". . .": np.array([4, 5, 6], np.float32),
        "at name@domain.com": np.array([7, 8, 9], np.float32),
        "cat": np.array([0, 1, 0], np.float32),
    }
    path = write_text(tmp_path / "glove.840B.3d.txt", vectors, header=False)
    loaded = read_word_vectors(path, ["cat"], max_new=3)
    assert loaded.format == "glove" and loaded.dim == 3
    assert loaded.new_words == ["the", ". . .", "at name@domain.com"]
    for word, vector in vectors.items():
        np.testing.assert_array_equal(loaded.vectors[word], vector)


def test_a_truncated_binary_file_is_an_error(tmp_path):
    path = write_binary(tmp_path / "v.bin", table())
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"vector 8 \(.*\): the file ends inside its 4 float32 values"):
        read_word_vectors(path, ["cat"])


def test_rows_not_kept_are_not_held_in_memory(tmp_path):
    """Streaming: of a large file only the wanted rows are kept."""
    rng = np.random.default_rng(1)
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(20000):
            handle.write(f"w{i} " + " ".join(f"{x:.3f}" for x in rng.standard_normal(8)) + "\n")
    loaded = read_word_vectors(path, ["w5", "w19999"], max_new=10)
    assert loaded.rows_read == 20000
    assert sorted(loaded.vectors) == sorted(["w5", "w19999"] + [f"w{i}" for i in range(10) if i != 5])


def test_tagger_trains_from_vectors_reports_coverage_and_packages_what_it_uses(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    rng = np.random.default_rng(3)
    # Vectors for some corpus words (GloVe-like, lowercase) and for words never in train.
    words = ["the", "cat", "dog", "saw", "paris", "alice", "."] + [f"extra{i}" for i in range(30)]
    vectors = {w: rng.standard_normal(16).astype(np.float32) for w in words}
    path = write_text(tmp_path / "glove.16d.txt", vectors, header=False, gz=False)
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus)
        + TINY_TAGGER
        + [
            f"model.word_vectors={path}",
            "model.word_vectors_max=10",
            "model.word_vectors_freeze=true",
            "trainer.max_epochs=2",
            "trainer.max_time=null",
        ],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = metrics["data"]["word_vectors"]
    assert summary["file"] == "glove.16d.txt" and summary["format"] == "glove"
    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["new_words"] == 3  # extra0..extra2 (the first 10 rows hold 7 corpus words)
    # Coverage, computed independently from the corpus files.
    from nlp_lstm.data.conll import read_conll

    for split in ("train", "valid", "test"):
        tokens = [w.lower() for s in read_conll(corpus[split], 0, 2) for w in s.words]
        expected = sum(t in vectors for t in tokens) / len(tokens)
        assert summary[f"coverage_{split}"] == pytest.approx(expected, abs=1e-6)
    meta = json.loads((run_dir / "model" / "package.json").read_text())
    assert meta["info"]["word_vectors"]["sha256"] == summary["sha256"]
    # The package keeps exactly the rows it uses: its vocabulary, frozen at the file's values.
    package = run_dir / "model"
    shutil.move(str(path), tmp_path / "gone.txt")  # the package must not need the file
    tagger = nlp_lstm.load(package, device="cpu")
    itos = tagger.vocabs.words.get_itos()
    assert "extra0" in itos and "extra2" in itos and "extra3" not in itos
    weight = tagger.model.word_embedding.weight
    assert weight.shape[0] == len(itos)
    for word in ("cat", "paris", "extra1"):
        assert torch.equal(weight[itos.index(word)], torch.from_numpy(vectors[word])), word
    assert len(tagger.tag(["the cat saw Alice ."])[0]) == 5
    # And back out: `nlp-lstm vectors` on the tagger gives the file's vectors again.
    proc = run_cli(["vectors", str(package), str(tmp_path / "out.vec")])
    assert proc.returncode == 0, proc.stderr
    again = read_word_vectors(tmp_path / "out.vec", list(vectors))
    assert set(again.vectors) == set(vectors) - {f"extra{i}" for i in range(3, 30)}
    for word, vector in again.vectors.items():
        np.testing.assert_allclose(vector, vectors[word], rtol=1e-6, atol=1e-7)
    # TensorBoard has the coverage in a TEXT table (facts, not curves).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    table = events.Tensors("data/word_vectors/text_summary")[0].tensor_proto.string_val[0].decode()
    row = next(line.split() for line in table.split("\n") if line.split()[:1] == ["coverage_train"])
    assert float(row[1]) == pytest.approx(summary["coverage_train"])
    assert not [t for t in events.Tags()["scalars"] if t.startswith("data/")]


def test_a_dimension_that_disagrees_with_emb_size_is_one_line(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    path = write_text(tmp_path / "v.txt", table(dim=5), header=False)
    proc = run_train(
        tmp_path / "run",
        conll_overrides(corpus) + TINY_TAGGER + [f"model.word_vectors={path}"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2
    assert (
        f"error: config model.emb_size=16: the vectors in {path} have 5 dimensions; set model.emb_size=5" in proc.stderr
    )


def test_a_malformed_vector_file_stops_training_with_file_and_line(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    path = tmp_path / "v.txt"
    path.write_text("the " + " ".join(["0.1"] * 16) + "\ncat 0.1 oops\n", encoding="utf-8")
    proc = run_train(
        tmp_path / "run",
        conll_overrides(corpus) + TINY_TAGGER + [f"model.word_vectors={path}"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2
    assert f"{path}:2: expected a word and 16 numbers, found 3 field(s)" in proc.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_vectors_command_writes_an_lm_embedding_that_reads_back(tmp_path, trained_lm):
    """`nlp-lstm vectors` writes word2vec text that model.word_vectors (and any tool) reads
    back to the same values."""
    package = trained_lm["run_dir"] / "model"
    lm = nlp_lstm.load(package, device="cpu")
    out = tmp_path / "lm.vec"
    proc = run_cli(["vectors", str(package), str(out)])
    assert proc.returncode == 0, proc.stderr
    header = out.read_text(encoding="utf-8").splitlines()[0]
    tokens = lm.tokenizer.vocab.get_itos()
    weight = lm.model.embedding.weight.detach()
    assert header == f"{len(tokens)} {weight.shape[1]}"
    loaded = read_word_vectors(out, tokens)
    assert loaded.format == "word2vec_text" and set(loaded.vectors) == set(tokens)
    for i, token in enumerate(tokens):
        np.testing.assert_allclose(loaded.vectors[token], weight[i].numpy(), rtol=1e-6, atol=1e-7)
