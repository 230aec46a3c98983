import gzip
import hashlib

import pytest

from nlp_lstm.data import registry
from nlp_lstm.data.fetch import fetch_corpus
from nlp_lstm.data.registry import Corpus, CorpusFile
from nlp_lstm.errors import DataError

TEXT = b"alpha beta\ngamma\n"
SHA = hashlib.sha256(TEXT).hexdigest()


@pytest.fixture
def toy_corpus(tmp_path, monkeypatch):
    """A registry entry whose canonical URL is a local file:// 'server'."""
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "train.txt.gz").write_bytes(gzip.compress(TEXT))
    corpus = Corpus(
        name="toy",
        format="lines",
        license="test",
        description="test corpus",
        files={"train": CorpusFile("train.txt", f"file://{origin}/train.txt.gz", SHA, gzip=True)},
    )
    monkeypatch.setitem(registry.CORPORA, "toy", corpus)
    return corpus


def test_fetch_from_canonical_url_decompresses_and_verifies(tmp_path, toy_corpus):
    paths = fetch_corpus("toy", tmp_path / "cache", mirror="")
    assert paths["train"].read_bytes() == TEXT
    assert paths["train"] == tmp_path / "cache" / "toy" / "train.txt"


def test_mirror_directory_is_preferred_and_plain_text_accepted(tmp_path, toy_corpus):
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "train.txt").write_bytes(TEXT)
    (tmp_path / "origin" / "train.txt.gz").unlink()  # the canonical source is gone
    assert fetch_corpus("toy", tmp_path / "cache", mirror=str(mirror))["train"].read_bytes() == TEXT


def test_mirror_as_url_prefix_with_gz_only(tmp_path, toy_corpus):
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "train.txt.gz").write_bytes(gzip.compress(TEXT))
    (tmp_path / "origin" / "train.txt.gz").unlink()
    assert fetch_corpus("toy", tmp_path / "cache", mirror=f"file://{mirror}")["train"].read_bytes() == TEXT


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, toy_corpus):
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "train.txt").write_bytes(b"tampered\n")
    (tmp_path / "origin" / "train.txt.gz").unlink()
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_corpus("toy", tmp_path / "cache", mirror=str(mirror))
    assert list((tmp_path / "cache" / "toy").iterdir()) == []  # no partial or temporary file


def test_corrupt_cached_file_is_replaced(tmp_path, toy_corpus):
    cached = tmp_path / "cache" / "toy" / "train.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a fi")
    assert fetch_corpus("toy", tmp_path / "cache", mirror="")["train"].read_bytes() == TEXT


def test_unknown_corpus_lists_known_ones(tmp_path):
    with pytest.raises(DataError, match="unknown corpus 'wikitext3'; known: .*wikitext2"):
        fetch_corpus("wikitext3", tmp_path)


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/absolute.txt", "sub/../../escape.txt", "."])
def test_file_names_cannot_escape_the_data_dir(tmp_path, toy_corpus, monkeypatch, name):
    origin = tmp_path / "origin" / "train.txt.gz"
    bad = Corpus(
        name="toy",
        format="lines",
        license="test",
        description="test corpus",
        files={"train": CorpusFile(name, f"file://{origin}", SHA, gzip=True)},
    )
    monkeypatch.setitem(registry.CORPORA, "toy", bad)
    with pytest.raises(DataError, match="must stay inside"):
        fetch_corpus("toy", tmp_path / "cache", mirror="")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "escape.txt").exists()


def test_a_symlink_out_of_the_data_dir_is_refused(tmp_path, toy_corpus):
    target_dir = tmp_path / "cache" / "toy"
    target_dir.mkdir(parents=True)
    (target_dir / "train.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(DataError, match="must stay inside"):
        fetch_corpus("toy", tmp_path / "cache", mirror="")
    assert not (tmp_path / "elsewhere.txt").exists()
