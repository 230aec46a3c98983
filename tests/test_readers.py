import pytest

from nlp_lstm.data.readers import read_lines
from nlp_lstm.errors import DataError


def test_blank_lines_are_kept_and_crlf_bom_stripped(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffone two\r\n\r\nthree\n".encode("utf-8"))
    assert read_lines(path) == ["one two", "", "three"]


def test_last_line_without_newline(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("a\nb", encoding="utf-8")
    assert read_lines(path) == ["a", "b"]


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"fine\nalso fine\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match=r"latin1\.txt:3: not valid UTF-8 \(byte 0xe9\)"):
        read_lines(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(DataError, match="empty.txt: corpus file is empty"):
        read_lines(empty)
    with pytest.raises(DataError, match="nope.txt: no such data.train file"):
        read_lines(tmp_path / "nope.txt", "data.train file")
    with pytest.raises(DataError, match="is a directory"):
        read_lines(tmp_path)
