"""Property-based tests: the readers and the config loader, fed random and mutated input,
end with the project's own error naming the place, or with data that lost nothing; never
another exception, a hang, or silently dropped tokens."""

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlp_lstm.data.conll import read_conll, read_conllu
from nlp_lstm.data.readers import iter_lines, read_lines
from nlp_lstm.errors import ConfigError, DataError
from nlp_lstm.train_entry import compose_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def _written(data: bytes) -> Iterator[Path]:
    """The bytes in a temporary file, removed afterwards (hypothesis calls a test hundreds of times)."""
    handle = tempfile.NamedTemporaryFile(prefix="fuzz-", suffix=".txt", delete=False)
    handle.write(data)
    handle.close()
    try:
        yield Path(handle.name)
    finally:
        Path(handle.name).unlink()


def _assert_names_the_place(error: DataError, path: Path, n_lines: int) -> None:
    message = str(error)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    located = re.match(re.escape(str(path)) + r":(\d+):", message)
    if located:
        assert 1 <= int(located.group(1)) <= max(1, n_lines), message


# Bytes that look like text, with the troublemakers mixed in.
text_bytes = st.lists(
    st.sampled_from(
        [
            b"a",
            b"word",
            b" ",
            b"\t",
            b"\n",
            b"\r\n",
            b"\r",
            b"\xef\xbb\xbf",
            b"\xff",
            b"\xc3\xa9",
            b"\xc3",
            b"\x00",
            b"\x0c",
            b"\xe2\x80\xa8",
            b"#",
        ]
    ),
    max_size=60,
).map(b"".join)


@FUZZ
@given(text_bytes)
def test_plain_text_readers_agree_or_name_the_line(data):
    with _written(data) as path:
        _check_plain(data, path)


def _check_plain(data, path: Path) -> None:
    try:
        lines = read_lines(path)
    except DataError as error:
        _assert_names_the_place(error, path, data.count(b"\n") + 1)
        try:
            list(iter_lines(path))
        except DataError as streamed_error:
            assert str(streamed_error) == str(error)  # both readers give the same message
        else:
            raise AssertionError("the streaming reader accepted what the whole-file reader refused")
        return
    assert list(iter_lines(path)) == lines
    assert all("\n" not in line for line in lines)
    text = data.decode("utf-8").removeprefix("\ufeff")
    assert len(lines) == text.count("\n") + (0 if text.endswith("\n") else 1)  # no line lost


conll_bytes = st.lists(
    st.sampled_from(
        [
            b"The DT B-NP",
            b"cat NN I-NP",
            b"sat VBD B-VP",
            b"-DOCSTART- -X- O",
            b"extra col umns here",
            b"two cols",
            b"\t",
            b" ",
            b"\n",
            b"\n",
            b"\n",
            b"\xff",
            b"\xc3\xa9t\xc3\xa9 NN O",
        ]
    ),
    max_size=40,
).map(b"".join)


@FUZZ
@given(conll_bytes, st.sampled_from([(0, -1), (0, 2), (1, 2), (0, 5)]))
def test_conll_reader_keeps_every_token_or_names_the_line(data, columns):
    with _written(data) as path:
        _check_conll(data, columns, path)


def _check_conll(data, columns, path: Path) -> None:
    word_column, tag_column = columns
    try:
        sentences = read_conll(path, word_column=word_column, tag_column=tag_column)
    except DataError as error:
        _assert_names_the_place(error, path, data.count(b"\n") + 1)
        return
    token_lines = [
        line
        for line in data.decode("utf-8").removeprefix("\ufeff").split("\n")
        if line.split() and line.split()[0] != "-DOCSTART-"
    ]
    assert sum(len(s.words) for s in sentences) == len(token_lines)  # nothing dropped
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)


conllu_line = st.one_of(
    st.sampled_from(
        [b"# sent_id = 1", b"", b"", b"1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", b"3.1\tx\t_\t_\t_\t_\t_\t_\t_\t_"]
    ),
    st.builds(
        lambda i, w, u: b"\t".join([i, w, b"_", u, b"_", b"_", b"_", b"_", b"_", b"_"]),
        st.sampled_from([b"1", b"2", b"x", b"10"]),
        st.sampled_from([b"The", b"\xc3\xa9t\xc3\xa9", b"\xff"]),
        st.sampled_from([b"DET", b"NOUN"]),
    ),
    st.sampled_from([b"1\tonly\tthree", b"1 The _ DET _ _ _ _ _ _"]),
)


@FUZZ
@given(st.lists(conllu_line, max_size=25).map(b"\n".join))
def test_conllu_reader_keeps_every_word_or_names_the_line(data):
    with _written(data) as path:
        _check_conllu(data, path)


def _check_conllu(data, path: Path) -> None:
    try:
        sentences = read_conllu(path)
    except DataError as error:
        _assert_names_the_place(error, path, data.count(b"\n") + 1)
        return
    words = [
        line
        for line in data.decode("utf-8").split("\n")
        if line.strip() and not line.startswith("#") and line.split("\t")[0].isdigit()
    ]
    assert sum(len(s.words) for s in sentences) == len(words)


KEYS = [
    "model.hidden_size",
    "model.dropout_input",
    "model.cell",
    "optim.lr",
    "optim.name",
    "task.bptt",
    "trainer.max_epochs",
    "trainer.precision",
    "tokenizer.kind",
    "model.nonexistent",
    "data",
    "model",
    "experiment",
    "trainer.nonfinite",
    "model.adaptive_cutoffs",
    "model.softmax",
]
VALUES = [
    "0",
    "-1",
    "1",
    "0.5",
    "2.0",
    "abc",
    "null",
    "[1,2]",
    "[]",
    "lstm",
    "gru",
    "bf16",
    "small",
    "wt2_small",
    "adaptive",
    "'x y'",
    "1e-3",
    "true",
    "{a: 1}",
]


# 25 compositions (about 0.3 s each) of up to three overrides from 16 keys and 19 values.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=3, unique_by=lambda kv: kv[0]))
def test_config_loader_accepts_or_names_the_key(pairs):
    overrides = [f"{key}={value}" for key, value in pairs]
    try:
        compose_config(overrides, tempfile.gettempdir())  # composed only: nothing is written
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and message.startswith("config ")
        assert any(key.split(".")[0] in message for key, _ in pairs) or "overrides" in message, message
