import pytest

from nlp_lstm.data.conll import read_conll, read_conllu
from nlp_lstm.errors import DataError


def test_conll_whitespace_breaks_docstart_and_columns(tmp_path):
    path = tmp_path / "a.conll"
    path.write_text("-DOCSTART- -X- O\n\nThe DT B-NP\ncat\tNN  I-NP\n\t\nsat VBD B-VP\n \n\n", encoding="utf-8")
    sentences = read_conll(path, 0, 2, {"pos": 1})
    assert [s.words for s in sentences] == [["The", "cat"], ["sat"]]
    assert [s.tags for s in sentences] == [["B-NP", "I-NP"], ["B-VP"]]
    assert sentences[0].features == {"pos": ["DT", "NN"]}
    assert sentences[1].line == 6


def test_conll_skips_the_line_comments_of_tag_output_but_keeps_hash_words(tmp_path):
    """`nlp-lstm tag --format conll` writes `# line = N` before each sentence; only that
    form is a comment: "#" is a word (CoNLL-2000's pound sign)."""
    from nlp_lstm.data.tag_files import conll_sentences, input_lines

    path = tmp_path / "tagged.conll"
    path.write_text("# line = 1\nThe\tB-NP\n#\tI-NP\n\n# line = 3\nsat\tB-VP\n", encoding="utf-8")
    assert [(s.words, s.tags, s.line) for s in read_conll(path, 0, 1)] == [
        (["The", "#"], ["B-NP", "I-NP"], 2),
        (["sat"], ["B-VP"], 6),
    ]
    assert [(s.words, s.gold, s.line) for s in conll_sentences(input_lines(str(path)), str(path), {}, 1)] == [
        (["The", "#"], ["B-NP", "I-NP"], 2),
        (["sat"], ["B-VP"], 6),
    ]


def test_conll_wrong_column_count_names_file_and_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("a DT B-NP\nb NN\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conll:2: 2 column\(s\), expected 3"):
        read_conll(path, 0, 2)


def test_feature_column_that_is_the_tag_column_is_refused(tmp_path):
    path = tmp_path / "leak.conll"
    path.write_text("Dogs NNS B-NP\nbark VBP B-VP\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"leak\.conll:1: data.feature_columns.pos=-1 is the tag column"):
        read_conll(path, 0, 2, {"pos": -1})
    assert read_conll(path, 0, 2, {"pos": 1})[0].features == {"pos": ["NNS", "VBP"]}


def test_conll_missing_tag_column(tmp_path):
    path = tmp_path / "two.conll"
    path.write_text("a B-NP\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"two\.conll:1: 2 column\(s\), but column 3 is configured"):
        read_conll(path, 0, 3)


def test_conll_empty_and_non_utf8(tmp_path):
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_conll(empty)
    only_docstart = tmp_path / "doc.conll"
    only_docstart.write_text("-DOCSTART- O\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentences"):
        read_conll(only_docstart)
    latin = tmp_path / "latin.conll"
    latin.write_bytes(b"a O\n\ncaf\xe9 O\n")
    with pytest.raises(DataError, match=r"latin\.conll:3: not valid UTF-8"):
        read_conll(latin)


def test_a_1000_token_sentence_is_kept_whole(tmp_path):
    path = tmp_path / "long.conll"
    path.write_text("\n".join(f"w{i} O" for i in range(1000)) + "\n\nshort O\n", encoding="utf-8")
    sentences = read_conll(path)
    assert [len(s.words) for s in sentences] == [1000, 1]


CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tOk\tok\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    sentences = read_conllu(path)
    assert [s.words for s in sentences] == [["I", "do", "n't", "."], ["Ok"]]
    assert sentences[0].tags == ["PRON", "AUX", "PART", "PUNCT"]
    assert read_conllu(path, "xpos")[0].tags == ["PRP", "VBP", "RB", "."]


def test_conllu_malformed_line(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text("1\tI\tI\tPRON\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conllu:1: 4 tab-separated field\(s\), CoNLL-U needs 10"):
        read_conllu(path)


def _data_cfg(name, train, **kw):
    from types import SimpleNamespace

    return SimpleNamespace(
        name=name,
        train=str(train),
        valid=str(train),
        test=None,
        word_column=0,
        tag_column=-1,
        feature_columns={},
        conllu_field="upos",
        tag_scheme="iob2",
        **kw,
    )


def _conllu_line(i, word, tag):
    return "\t".join([str(i), word, "_", tag, "_", "_", "0", "dep", "_", "_"])


def test_a_bad_tag_error_names_the_tags_own_line(tmp_path):
    """Training reads and evaluation reads both name the line of the bad tag, not the line
    the sentence starts on (CoNLL-U: comments and multiword ranges do not shift it)."""
    from nlp_lstm.data.tag_files import conll_sentences, conllu_sentences, input_lines
    from nlp_lstm.data.tagging_corpus import read_tagging_splits
    from nlp_lstm.inference.tag_evaluation import _checked

    conll = tmp_path / "badtag.conll"
    lines = [
        "-DOCSTART- O",
        "",
        "Paris B-LOC",
        "is O",
        "",
        "nice O",
        ". O",
        "",
        "Bob B-PER",
        "went O",
        "to O",
        "Rome X-LOC",
        ". O",
        "",
    ]  # the sentence starts on line 9
    conll.write_text("\n".join(lines), encoding="utf-8")
    message = r"badtag\.conll:12: tag 'X-LOC' \(token 4\)"
    with pytest.raises(DataError, match=message):
        read_tagging_splits(_data_cfg("conll", conll), tmp_path)
    with pytest.raises(DataError, match=message):
        list(_checked(conll_sentences(input_lines(str(conll)), str(conll), {}, gold_column=1), str(conll), "iob2"))

    conllu = tmp_path / "badtag.conllu"
    lines = [
        "# sent_id = 1",
        _conllu_line(1, "Paris", "B-LOC"),
        "",
        "# sent_id = 2",
        "# text = Bob went to Rome.",
        _conllu_line(1, "Bob", "B-PER"),  # starts on line 4
        "2-3\twent-to\t_\t_\t_\t_\t_\t_\t_\t_",
        _conllu_line(2, "went", "O"),
        _conllu_line(3, "to", "O"),
        _conllu_line(4, "Rome", "X-LOC"),
        "",
    ]
    conllu.write_text("\n".join(lines), encoding="utf-8")
    message = r"badtag\.conllu:10: tag 'X-LOC' \(token 4\)"
    with pytest.raises(DataError, match=message):
        read_tagging_splits(_data_cfg("conllu", conllu), tmp_path)
    with pytest.raises(DataError, match=message):
        list(_checked(conllu_sentences(input_lines(str(conllu)), str(conllu), "upos"), str(conllu), "iob2"))
