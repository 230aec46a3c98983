import pytest

from helpers.corpora import make_lines
from nlp_lstm.config import TokenizerConfig
from nlp_lstm.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    WordTokenizer,
    fit_tokenizer,
    load_tokenizer,
    save_tokenizer,
)
from nlp_lstm.errors import ModelPackageError

LINES = ["the cat sat", "", "the dog sat down"]


def test_word_tokenizer_stream_has_one_eos_per_line_and_unk_for_unseen():
    tok = WordTokenizer.fit(LINES)
    assert tok.vocab.get_itos()[:2] == ["<unk>", "<eos>"]
    ids = tok.encode_lines(["the zebra sat", ""])
    assert ids.count(tok.eos_id) == 2
    assert ids[1] == tok.unk_id


def test_word_tokenizer_decode_round_trip():
    tok = WordTokenizer.fit(LINES)
    assert tok.decode(tok.encode_lines(LINES)) == "the cat sat\n\nthe dog sat down\n"


def test_word_min_freq_and_lowercase():
    tok = WordTokenizer.fit(["A a b", "a C"], min_freq=2, lowercase=True)
    assert tok.vocab.get_itos() == ["<unk>", "<eos>", "a"]
    assert tok.encode_line("A b") == [2, tok.unk_id]


def test_char_tokenizer_round_trip_and_unknown_chars():
    tok = CharTokenizer.fit(["abc", "ab "])
    assert tok.decode(tok.encode_lines(["cab", "a b"])) == "cab\na b\n"
    assert tok.encode_line("z") == [tok.unk_id]


def test_sentencepiece_trains_on_train_lines_and_round_trips(tmp_path):
    lines = make_lines(300, 7)
    cfg = TokenizerConfig(kind="sentencepiece", vocab_size=60, model_type="bpe")
    tok = fit_tokenizer(cfg, lines, tmp_path / "work")
    assert isinstance(tok, SentencePieceTokenizer)
    assert (tok.unk_id, tok.eos_id) == (0, 1)
    assert 40 <= tok.vocab_size <= 60
    text = ["the cat sat on the mat .", "a dog found the bridge today ."]
    ids = tok.encode_lines(text)
    assert ids.count(tok.eos_id) == 2
    assert tok.decode(ids) == "\n".join(text) + "\n"
    # fewer pieces than characters: it learnt merges
    assert len(tok.encode_line(text[0])) < len(text[0])


def test_sentencepiece_unigram(tmp_path):
    cfg = TokenizerConfig(kind="sentencepiece", vocab_size=50, model_type="unigram")
    tok = fit_tokenizer(cfg, make_lines(300, 8), tmp_path / "work")
    assert tok.decode(tok.encode_lines(["the river found her friend ."])) == "the river found her friend .\n"


@pytest.mark.parametrize("kind", ["word", "char", "sentencepiece"])
def test_save_and_load_without_the_corpus(tmp_path, kind):
    cfg = TokenizerConfig(kind=kind, vocab_size=50)
    tok = fit_tokenizer(cfg, make_lines(300, 9), tmp_path / "work")
    save_tokenizer(tok, tmp_path / "saved")
    loaded = load_tokenizer(tmp_path / "saved")
    sample = ["the old man looked at a tree again ."]
    assert loaded.kind == kind
    assert loaded.encode_lines(sample) == tok.encode_lines(sample)
    assert loaded.vocab.get_itos() == tok.vocab.get_itos()


def test_loading_a_directory_without_tokenizer_files(tmp_path):
    with pytest.raises(ModelPackageError, match="not a saved tokenizer"):
        load_tokenizer(tmp_path)
