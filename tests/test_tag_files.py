"""Using a trained tagger on real files: CoNLL-U passed through byte for byte but for the
filled field, input order kept under length-sorted batching, memory that does not grow
with the input, spans whose offsets and confidences are right, sentence splitting,
atomic output."""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import re
import tracemalloc

import pytest
import torch

import nlp_lstm
from helpers.runs import run_cli, run_train
from helpers.tagging import (
    ADJ,
    DET,
    NOUN,
    TINY_TAGGER,
    VERB,
    conll_overrides,
    make_sentence,
    tagging_corpus,
    write_conll,
)
from nlp_lstm.cli import main
from nlp_lstm.data.tag_files import (
    InputSentence,
    conllu_sentences,
    detect_input,
    format_conllu,
    input_lines,
    split_sentences,
    tokenize,
)
from nlp_lstm.data.tag_schemes import spans_from_tags
from nlp_lstm.errors import DataError
from nlp_lstm.inference.tag_stream import tag_stream


@pytest.fixture(scope="module")
def chunker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunker")
    corpus = tagging_corpus(tmp / "corpus")
    run_dir = tmp / "run"
    run_train(
        run_dir,
        conll_overrides(corpus)
        + TINY_TAGGER
        + ["trainer.max_epochs=4", "trainer.max_time=null", "logger.tensorboard=false"],
        tmp / "data",
    )
    return run_dir / "model"


CONLLU = """# newdoc id = doc1
# sent_id = 1
# text = The cat's old house.
1\tThe\tthe\tDET\tDT\tDefinite=Def\t3\tdet\t_\t_
2-3\tcat's\t_\t_\t_\t_\t_\t_\t_\t_
2\tcat\tcat\tNOUN\tNN\tNumber=Sing\t5\tnmod:poss\t_\t_
3\t's\t's\tPART\tPOS\t_\t2\tcase\t_\tSpaceAfter=No|Foo=bar
4\told\told\tADJ\tJJ\tDegree=Pos\t5\tamod\t_\t_
5\thouse\thouse\tNOUN\tNN\tNumber=Sing\t0\troot\t_\tSpaceAfter=No
5.1\tis\tbe\tAUX\tVBZ\t_\t_\t_\t5:cop\t_
6\t.\t.\tPUNCT\t.\t_\t5\tpunct\t_\t_

# sent_id = 2
1\tA\ta\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t0\troot\t_\tTag=old
"""


def test_conllu_comes_back_with_only_the_chosen_field_changed(tmp_path, chunker):
    source = tmp_path / "in.conllu"
    source.write_text(CONLLU, encoding="utf-8")
    proc = run_cli(
        [
            "tag",
            str(chunker),
            str(source),
            "--input",
            "conllu",
            "--format",
            "conllu",
            "--misc-key",
            "Chunk",
            "--precision",
            "fp32",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    tagged = nlp_lstm.load(chunker, device="cpu").tag_tokens([["The", "cat", "'s", "old", "house", "."], ["A", "dog"]])
    out_lines = proc.stdout.rstrip("\n").split("\n")
    in_lines = CONLLU.rstrip("\n").split("\n")
    assert len(out_lines) == len(in_lines)
    tags = iter(itertools.chain.from_iterable(tagged))
    for before, after in zip(in_lines, out_lines):
        fields = before.split("\t")
        if before.startswith("#") or not before or "-" in fields[0] or "." in fields[0]:
            assert after == before  # comments, blank lines, ranges, empty nodes: untouched
            continue
        new = after.split("\t")
        misc = [e for e in fields[9].split("|") if e != "_" and not e.startswith("Chunk=")]
        assert new[:9] == fields[:9]
        assert new[9] == "|".join(misc + [f"Chunk={next(tags)}"])
    # UPOS instead: the fourth field replaced, MISC kept
    upos = run_cli(
        [
            "tag",
            str(chunker),
            str(source),
            "--input",
            "conllu",
            "--format",
            "conllu",
            "--conllu-field",
            "upos",
            "--precision",
            "fp32",
        ]
    )
    first_word = [line for line in upos.stdout.split("\n") if line.startswith("1\tThe")][0].split("\t")
    assert first_word[3] == tagged[0][0] and first_word[9] == "_"


def _word(i, form, upos):
    return "\t".join([str(i), form, form.lower(), upos, "_", "_", "0", "root", "_", "_"])


# Comment-only blocks before the first sentence, between two and after the last.
COMMENT_BLOCKS = (
    "\n".join(
        [
            "# a note before the first sentence",
            "",
            "# sent_id = 1",
            _word(1, "A", "DET"),
            _word(2, "dog", "NOUN"),
            "",
            "# newdoc id = doc2",
            "# note = a block of comments between documents",
            "",
            "# sent_id = 2",
            _word(1, "Dogs", "NOUN"),
            "",
            "# end of document",
            "# (two comment lines after the last sentence)",
        ]
    )
    + "\n"
)


def test_comment_only_blocks_come_back_wherever_they_stand(tmp_path):
    """CoNLL-U in, CoNLL-U out keeps every non-word line: a comment-only block at the end
    was dropped, one elsewhere was an error. Evaluation sees the same two sentences."""
    source = tmp_path / "in.conllu"
    source.write_text(COMMENT_BLOCKS, encoding="utf-8")
    sentences = list(conllu_sentences(input_lines(str(source)), str(source), "upos"))
    assert [(s.words, s.gold, s.line) for s in sentences] == [
        (["A", "dog"], ["DET", "NOUN"], 3),
        (["Dogs"], ["NOUN"], 10),
    ]
    out = "".join(format_conllu(s, s.gold, n, "upos") + "\n\n" for n, s in enumerate(sentences, 1))
    assert out.rstrip("\n").split("\n") == COMMENT_BLOCKS.rstrip("\n").split("\n")


def test_a_conllu_file_of_comments_only_is_an_error(tmp_path):
    source = tmp_path / "notes.conllu"
    source.write_text("# sent_id = 1\n\n# nothing else\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(source))}:1: comment lines but no sentence"):
        list(conllu_sentences(input_lines(str(source)), str(source)))


def test_tag_writes_a_trailing_comment_block_back(tmp_path, chunker, capsys):
    text = "\n".join(["# sent_id = 1", _word(1, "A", "DET"), _word(2, "dog", "NOUN"), "", "# end of document"]) + "\n"
    source = tmp_path / "in.conllu"
    source.write_text(text, encoding="utf-8")
    assert (
        main(["tag", str(chunker), str(source), "--input", "conllu", "--format", "conllu", "--precision", "fp32"]) == 0
    )
    out_lines = capsys.readouterr().out.rstrip("\n").split("\n")
    in_lines = text.rstrip("\n").split("\n")
    assert [line for line in out_lines if line.startswith("#")] == [line for line in in_lines if line.startswith("#")]
    assert len(out_lines) == len(in_lines) and out_lines[-2:] == ["", "# end of document"]


def test_raw_text_becomes_conllu_with_text_and_sent_id(chunker):
    proc = run_cli(["tag", str(chunker), "--format", "conllu"], stdin="the cat saw Bob.\n\nBob likes a dog .\n")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.strip("\n").split("\n\n")
    assert blocks[0].split("\n")[:2] == ["# sent_id = 1", "# text = the cat saw Bob."]
    assert blocks[1].split("\n")[:2] == ["# sent_id = 2", "# text = Bob likes a dog ."]
    assert blocks[0].split("\n")[2] == "# line = 1" and blocks[1].split("\n")[2] == "# line = 3"
    bob = blocks[0].split("\n")[6].split("\t")
    assert bob[1] == "Bob" and bob[9].startswith("SpaceAfter=No|Tag=")  # no space before the full stop


def random_sentences(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [w for w, _, _ in make_sentence(rng)]
        out.append(words[: rng.randint(1, len(words))])  # lengths 1 .. 12
    return out


def test_output_keeps_input_order_under_length_sorted_windows(tmp_path, chunker):
    sentences = random_sentences(700, 5)
    source = tmp_path / "in.conll"
    source.write_text("".join("\n".join(s) + "\n\n" for s in sentences), encoding="utf-8")
    out = tmp_path / "out.conll"
    proc = run_cli(
        [
            "tag",
            str(chunker),
            str(source),
            "--input",
            "conll",
            "--batch-size",
            "7",
            "--output",
            str(out),
            "--precision",
            "fp32",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    blocks = [b.split("\n") for b in out.read_text(encoding="utf-8").strip("\n").split("\n\n")]
    # Each sentence says its first line in the input.
    starts = list(itertools.accumulate([1] + [len(s) + 1 for s in sentences[:-1]]))
    assert [b[0] for b in blocks] == [f"# line = {n}" for n in starts]
    blocks = [b[1:] for b in blocks]
    assert [[line.split("\t")[0] for line in b] for b in blocks] == sentences
    # The same tags as each sentence tagged alone.
    tagger = nlp_lstm.load(chunker, device="cpu")
    alone = [tagger.tag_tokens([s])[0] for s in sentences[:60]]
    assert [[line.split("\t")[1] for line in b] for b in blocks[:60]] == alone


def test_memory_does_not_grow_with_the_input(chunker):
    """Peak Python memory while tagging 20x more sentences stays within a small margin:
    only a window of sentences is ever held."""
    tagger = nlp_lstm.load(chunker, device="cpu")
    pool = random_sentences(300, 6)

    def peak(n: int) -> int:
        def source():
            for i in range(n):
                yield InputSentence(list(pool[i % len(pool)]))

        tracemalloc.start()
        count = sum(1 for _ in tag_stream(tagger, source(), batch_size=64, window=256, progress=False))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == n
        return top

    small, large = peak(1_000), peak(20_000)
    assert large < small * 1.5 + 2**20, (small, large)


def test_span_offsets_match_the_raw_text(chunker):
    tagger = nlp_lstm.load(chunker, device="cpu")
    texts = ["The old cat saw Bob near the river.", "  Alice   likes   a   small dog ."]
    for text, spans in zip(texts, tagger.spans(texts)):
        assert spans
        for span in spans:
            assert text[span["start_char"] : span["end_char"]] == span["text"]
            assert span["text"].split() == span["words"].split()
            assert 0 < span["confidence"] <= 1
    tokens = tagger.spans([["the", "cat", "saw", "Bob"]])[0]
    assert tokens and all("start_char" not in s for s in tokens)


def _every_sequence(tagger, words):
    """Brute force: the batch, the emissions, every tag sequence of `words` and its CRF
    probability (float64)."""
    from nlp_lstm.data.tagging_batch import collate

    batch = collate([tagger._encode(words)])
    with torch.no_grad():
        emissions = tagger.model(batch)
        n = emissions.size(-1)
        sequences = torch.tensor(list(itertools.product(range(n), repeat=len(words))))
        scores = tagger.model.crf.sequence_score(
            emissions.expand(len(sequences), -1, -1),
            sequences,
            torch.ones(len(sequences), len(words), dtype=torch.bool),
        )
    return batch, emissions, sequences, torch.softmax(scores.double(), 0)


def test_span_confidence_is_the_crfs_exact_posterior(chunker):
    """Against brute force over every tag sequence of a 4-word sentence: the probability
    that the span's words carry exactly its tags."""
    tagger = nlp_lstm.load(chunker, device="cpu")
    words = ["the", "dog", "saw", "Bob"]
    batch, emissions, sequences, probs = _every_sequence(tagger, words)
    crf = tagger.model.crf
    itos = tagger.vocabs.tags.get_itos()
    found = tagger.spans([words])[0]
    model_tags = [itos[t] for t in crf.viterbi(emissions, batch.mask)[0]]
    assert [(s["type"], s["start"], s["end"]) for s in found] == [
        (label, a, b) for label, a, b in spans_from_tags(model_tags, tagger.scheme)
    ]
    for span in found:
        ids = [itos.index(t) for t in model_tags[span["start"] : span["end"]]]
        match = (sequences[:, span["start"] : span["end"]] == torch.tensor(ids)).all(1)
        assert span["confidence"] == pytest.approx(float(probs[match].sum()), rel=1e-4)


def test_sentences_are_split_with_offsets_into_the_line(chunker):
    paragraph = "Dr. Smith saw the cat. Then Bob likes a dog!  Alice found the river."
    spans = split_sentences(paragraph)
    assert [paragraph[a:b] for a, b in spans] == [
        "Dr. Smith saw the cat.",
        "Then Bob likes a dog!",
        "Alice found the river.",
    ]
    proc = run_cli(["tag", str(chunker), "--split-sentences", "--format", "jsonl"], stdin=paragraph + "\n")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in records] == ["Dr. Smith saw the cat.", "Then Bob likes a dog!", "Alice found the river."]
    for record in records:
        for span in record["spans"]:
            assert paragraph[span["start_char"] : span["end_char"]] == span["text"]


def test_output_file_is_all_or_nothing(tmp_path, chunker):
    out = tmp_path / "out.conll"
    good = "the DT\ncat NN\n\n" * 50
    bad = good + "a b c\n"  # column count changes late in the input
    proc = run_cli(["tag", str(chunker), "-", "--input", "conll", "--output", str(out)], stdin=bad)
    assert proc.returncode == 2 and "stdin:151: 3 column(s), expected 2" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.conll*"))
    proc = run_cli(["tag", str(chunker), "-", "--input", "conll", "--output", str(out), "--progress", "on"], stdin=good)
    assert proc.returncode == 0 and out.read_text().count("\n\n") == 50
    assert "sentences" in proc.stderr  # the progress bar, asked for on a pipe


def test_softmax_head_span_confidence_is_the_product_of_word_probabilities(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus)
        + TINY_TAGGER
        + ["model.head=softmax", "trainer.max_epochs=2", "trainer.max_time=null", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    tagger = nlp_lstm.load(run_dir / "model", device="cpu")
    words = [DET[0], ADJ[0], NOUN[0], VERB[0], DET[1], NOUN[1]]
    from nlp_lstm.data.tagging_batch import collate

    with torch.no_grad():
        probs = torch.softmax(tagger.model(collate([tagger._encode(words)]))[0], -1)
    best = probs.argmax(-1)
    for span in tagger.spans([words])[0]:
        expected = math.prod(float(probs[t, best[t]]) for t in range(span["start"], span["end"]))
        assert span["confidence"] == pytest.approx(expected, rel=1e-4)


def test_evaluate_any_labelled_file_reports_what_training_reported(tmp_path, chunker):
    run_dir = chunker.parent
    test_file = run_dir.parent / "corpus" / "test.txt"
    out = tmp_path / "report.json"
    proc = run_cli(
        [
            "evaluate",
            str(chunker),
            str(test_file),
            "--precision",
            "fp32",
            "--json",
            str(out),
            "--predictions",
            str(tmp_path / "pred.conll"),
        ]
    )  # training evaluated in fp32
    assert proc.returncode == 0, proc.stderr
    assert f"input: {test_file} read as conll (no CoNLL-U word lines)" in proc.stderr
    report = json.loads(out.read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    for key in ("f1", "precision", "recall", "acc", "strict_f1"):
        assert report[key] == pytest.approx(trained[key]), key
    assert "spans (conlleval):" in proc.stdout and "span type  precision" in proc.stdout
    assert (tmp_path / "pred.conll").read_text() == (run_dir / "predictions" / "test.conll").read_text()
    # A gold tag outside the model's scheme is one line naming file and line.
    bad = tmp_path / "bad.txt"
    bad.write_text("the DT B-NP\ncat NN E-NP\n", encoding="utf-8")
    proc = run_cli(["evaluate", str(chunker), str(bad)])
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"error: {bad}:2: tag 'E-NP' (token 2) does not fit data.tag_scheme=iob2"
    )


def test_bf16_prediction_agrees_with_fp32(chunker):
    from nlp_lstm.device import cpu_has_native_bf16

    tagger = nlp_lstm.load(chunker, device="cpu")
    sentences = random_sentences(200, 9)
    fp32 = tagger.tag_tokens(sentences)
    assert tagger.set_precision("auto").precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    bf16 = tagger.set_precision("bf16").tag_tokens(sentences)
    same = sum(a == b for x, y in zip(fp32, bf16) for a, b in zip(x, y))
    assert same >= 0.97 * sum(map(len, fp32))


def test_raw_text_is_tokenised_as_the_treebank_corpora_are():
    # The taggers learn from Penn Treebank tokens (CoNLL-2000, EWT): contractions split off,
    # abbreviations and numbers whole. Offsets point into the text; nothing is dropped.
    from nlp_lstm.data.tag_files import tokenize

    text = "He doesn't know the U.S. economy's 3.5% growth, Boeing's 1,000 jets ; e.g. don't  wait!"
    tokens = tokenize(text)
    assert [t for t, _, _ in tokens] == [
        "He",
        "does",
        "n't",
        "know",
        "the",
        "U.S.",
        "economy",
        "'s",
        "3.5",
        "%",
        "growth",
        ",",
        "Boeing",
        "'s",
        "1,000",
        "jets",
        ";",
        "e.g.",
        "do",
        "n't",
        "wait",
        "!",
    ]
    assert all(text[start:end] == token for token, start, end in tokens)
    covered = "".join(text[start:end] for _, start, end in tokens)
    assert covered == "".join(text.split())  # every non-space character, once, in order


# Nine lines: blank ones in the middle (one of spaces) and two at the end; line 3 is a
# paragraph of two sentences.
PARAGRAPHS = [
    "the cat saw Bob.",
    "",
    "Bob likes the cat. It is here!",
    "   ",
    "a dog found Paris .",
    "",
    "Alice likes a red bird.",
    "",
    "",
]


def _tag_file(chunker, tmp_path, capsys, lines, *options):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["tag", str(chunker), str(source), "--precision", "fp32", *options]) == 0
    return capsys.readouterr().out


def _jsonl(chunker, tmp_path, capsys, lines, *options):
    out = _tag_file(chunker, tmp_path, capsys, lines, "--format", "jsonl", *options)
    return [json.loads(line) for line in out.splitlines()]


def test_split_sentence_offsets_are_into_the_line(tmp_path, chunker, capsys):
    """The second sentence's tokens were offset from its own start ("It" at 0, 2)."""
    line = "Bob likes the cat. It is here!"
    records = _jsonl(chunker, tmp_path, capsys, [line], "--split-sentences")
    assert [(r["line"], r["sentence_start"], r["text"]) for r in records] == [
        (1, 0, "Bob likes the cat."),
        (1, 19, "It is here!"),
    ]
    it = records[1]["tokens"][0]
    assert (it["token"], it["start"], it["end"]) == ("It", 19, 21)
    for record in records:
        assert line[record["sentence_start"] :].startswith(record["text"])
        assert all(line[t["start"] : t["end"]] == t["token"] for t in record["tokens"])
        for span in record["spans"]:
            assert line[span["start_char"] : span["end_char"]] == span["text"]


def test_jsonl_records_realign_with_input_lines(tmp_path, chunker, capsys):
    """N lines in, a record for each (blank lines gave none), numbered from 1; split or
    not, each token's offsets point into its line."""
    n = len(PARAGRAPHS)
    plain = _jsonl(chunker, tmp_path, capsys, PARAGRAPHS)
    assert [r["line"] for r in plain] == list(range(1, n + 1))
    split = _jsonl(chunker, tmp_path, capsys, PARAGRAPHS, "--split-sentences")
    assert [r["line"] for r in split] == [1, 2, 3, 3, 4, 5, 6, 7, 8, 9]
    for record in plain + split:
        line = PARAGRAPHS[record["line"] - 1]
        assert (record["tokens"] == []) == (not line.strip())
        assert all(line[t["start"] : t["end"]] == t["token"] for t in record["tokens"])
    assert plain[1]["spans"] == [] and "sentence_start" not in plain[0]


def test_text_format_writes_one_line_per_input_line(tmp_path, chunker, capsys):
    for options in ((), ("--split-sentences",)):
        out = _tag_file(chunker, tmp_path, capsys, PARAGRAPHS, "--format", "text", *options).split("\n")
        assert out[-1] == "" and len(out) - 1 == len(PARAGRAPHS)
        assert [bool(o) for o in out[:-1]] == [bool(p.strip()) for p in PARAGRAPHS]
    # The split line's two sentences, joined back on their line.
    assert [w.rsplit("/", 1)[0] for w in out[2].split()] == ["Bob", "likes", "the", "cat", ".", "It", "is", "here", "!"]


def test_conll_output_says_which_line_each_sentence_came_from_and_reads_back(tmp_path, chunker, capsys):
    from nlp_lstm.data.conll import read_conll

    out = _tag_file(chunker, tmp_path, capsys, PARAGRAPHS, "--format", "conll", "--split-sentences")
    blocks = [b.split("\n") for b in out.strip("\n").split("\n\n")]
    assert [b[0] for b in blocks] == [f"# line = {n}" for n in (1, 3, 3, 5, 7)]
    assert [row.split("\t")[0] for row in blocks[2][1:]] == ["It", "is", "here", "!"]
    tagged = tmp_path / "tagged.conll"
    tagged.write_text(out, encoding="utf-8")
    # Read back: by the training reader, and by `tag --input conll`, whose lines are each
    # sentence's first word line in this file (the line after its comment).
    assert [(s.words, s.tags) for s in read_conll(tagged, 0, 1)] == [
        ([r.split("\t")[0] for r in b[1:]], [r.split("\t")[1] for r in b[1:]]) for b in blocks
    ]
    assert main(["tag", str(chunker), str(tagged), "--input", "conll", "--format", "jsonl"]) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    file_lines = out.split("\n")
    assert [[t["token"] for t in r["tokens"]] for r in again] == [[r.split("\t")[0] for r in b[1:]] for b in blocks]
    assert [file_lines[r["line"] - 2] for r in again] == [b[0] for b in blocks]
    # CoNLL-U from raw text carries the line too (after sent_id and text).
    conllu = _tag_file(chunker, tmp_path, capsys, PARAGRAPHS, "--format", "conllu", "--split-sentences")
    heads = [b.split("\n")[:3] for b in conllu.strip("\n").split("\n\n")]
    assert heads[2] == ["# sent_id = 3", "# text = It is here!", "# line = 3"]
    assert [h[2] for h in heads] == [b[0] for b in blocks]


def test_line_numbers_of_conll_and_conllu_inputs(tmp_path, chunker, capsys):
    """A sentence's line: CoNLL its first word line; CoNLL-U the first line of its block."""
    source = tmp_path / "in.conll"
    source.write_text("-DOCSTART- O\n\nthe O\ncat O\n\n\nBob O\n", encoding="utf-8")
    assert main(["tag", str(chunker), str(source), "--input", "conll", "--format", "jsonl"]) == 0
    assert [json.loads(r)["line"] for r in capsys.readouterr().out.splitlines()] == [3, 7]
    source = tmp_path / "in.conllu"
    source.write_text(CONLLU, encoding="utf-8")
    assert main(["tag", str(chunker), str(source), "--input", "conllu", "--format", "jsonl"]) == 0
    assert [json.loads(r)["line"] for r in capsys.readouterr().out.splitlines()] == [1, 13]


def test_many_lines_keep_order_and_line_numbers_through_batched_windows(tmp_path, chunker, capsys):
    rng = random.Random(8)
    lines = []
    for words in random_sentences(600, 9):
        roll = rng.random()
        lines.append("" if roll < 0.15 else " ".join(words) + (". Bob saw a dog." if roll > 0.7 else ""))
    records = _jsonl(chunker, tmp_path, capsys, lines, "--split-sentences", "--batch-size", "5")
    assert sorted({r["line"] for r in records}) == list(range(1, len(lines) + 1))
    assert [r["line"] for r in records] == sorted(r["line"] for r in records)  # input order
    for record in records:
        line = lines[record["line"] - 1]
        assert all(line[t["start"] : t["end"]] == t["token"] for t in record["tokens"])
    by_line = {}
    for record in records:
        by_line.setdefault(record["line"], []).extend(t["token"] for t in record["tokens"])
    assert [by_line[n] for n in range(1, len(lines) + 1)] == [
        [t for a, b in split_sentences(line) for t, _, _ in tokenize(line[a:b])] for line in lines
    ]


# ------------------------------------------------------------------ input format detection
def _tag(capsys, args):
    assert main(["tag", *args, "--precision", "fp32"]) == 0
    return capsys.readouterr()


def test_tag_reads_a_conll_file_as_conll_without_being_told(tmp_path, chunker, capsys):
    source = write_conll(tmp_path / "news.conll", 3, seed=7, docstart=True)
    out = _tag(capsys, [str(chunker), str(source)])
    blocks = [b.split("\n")[1:] for b in out.out.strip("\n").split("\n\n")]  # after its `# line = N`
    expected = [b.strip("\n").split("\n") for b in source.read_text().split("\n\n")[1:] if b.strip()]
    assert "-DOCSTART-" not in out.out  # skipped as CoNLL skips it, not tagged as a word
    assert [[line.split("\t")[0] for line in b] for b in blocks] == [[line.split()[0] for line in b] for b in expected]
    assert out.err.strip().splitlines() == [f"input: {source} read as conll (extension .conll); pass --input to choose"]
    # --input still decides: as raw text, every line is a sentence and -DOCSTART- a word
    out = _tag(capsys, [str(chunker), str(source), "--input", "text"])
    assert out.out.startswith("# line = 1\n-\t") and "\nDOCSTART\t" in out.out and "input:" not in out.err


def test_tag_detects_conllu_and_conll_by_content(tmp_path, chunker, capsys, monkeypatch):
    source = tmp_path / "sample.data"  # no extension to go by
    source.write_text(CONLLU, encoding="utf-8")
    out = _tag(capsys, [str(chunker), str(source), "--format", "conllu"])
    assert "read as conllu (" in out.err
    assert [line for line in out.out.split("\n") if line.startswith("#")] == [
        line for line in CONLLU.split("\n") if line.startswith("#")
    ]
    columns = write_conll(tmp_path / "train.txt", 2, seed=8)  # CoNLL-2000 ships .txt column files
    out = _tag(capsys, [str(chunker), str(columns)])
    assert f"input: {columns} read as conll (3 columns" in out.err
    assert out.out.count("\n\n") == 2 and out.out.split("\n")[1].split("\t")[0] == columns.read_text().split()[0]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"the DT\ncat NN\n\nBob NNP\nreads VBD\n")))
    out = _tag(capsys, [str(chunker), "-"])  # stdin: sniffed too
    assert out.err.startswith("input: stdin read as conll (2 columns")
    assert out.out.split("\n\n")[0].split("\n")[2].startswith("cat\t")  # after `# line = 1`


def test_tag_reads_plain_text_as_text(tmp_path, chunker, capsys):
    source = tmp_path / "notes.txt"
    source.write_text("the old cat saw Bob .\nAlice likes a dog near the river .\n\nBob reads .\n", encoding="utf-8")
    out = _tag(capsys, [str(chunker), str(source), "--format", "text"])
    assert f"input: {source} read as text (" in out.err
    assert [len(line.split()) for line in out.out.split("\n")[:-1]] == [6, 8, 0, 3]  # a line out per line in


def test_detection_reads_only_the_head_of_the_input():
    def lines():
        yield 1, "-DOCSTART- -X- O"
        for i in range(2, 10**9):
            if i > 1000:
                raise AssertionError("read past the head")
            yield i, "" if i % 3 == 0 else "word NN"

    fmt, why, stream = detect_input("-", lines())
    assert fmt == "conll" and "-DOCSTART-" in why
    assert next(stream) == (1, "-DOCSTART- -X- O")  # nothing lost to the sniffing


@pytest.mark.parametrize(
    "name, text, choices, expected",
    [
        (
            "a",
            "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n",
            ("conll", "conllu"),
            "conllu",
        ),
        ("a", "the DT B-NP\ncat NN I-NP\n", ("conll", "conllu"), "conll"),
        ("a.conllu", "the DT B-NP\ncat NN I-NP\n", ("conll", "conllu"), "conllu"),  # the extension first
        ("a.txt", "# text = The cat .\n1\tThe\t_\t_\t_\t_\t_\t_\t_\t_\n", ("text", "conll", "conllu"), "conllu"),
        ("a", "Hello world\n", ("text", "conll", "conllu"), "text"),
        ("a", "The cat sat on the mat .\nIt was warm .\n", ("text", "conll", "conllu"), "text"),
    ],
)
def test_detection_rules(name, text, choices, expected):
    lines = enumerate(text.split("\n"), start=1)
    assert detect_input(name, lines, choices)[0] == expected


def word_salad(n: int, seed: int):
    """Sentences of the toy grammar's words in random order, some unseen: scores close
    enough that bf16 and fp32 emissions can choose differently."""
    rng = random.Random(seed)
    words = DET + ADJ + NOUN + VERB + ["Paris", "Bob", "near", ".", "zyx", "Qwerty", "blorp"]
    return [[rng.choice(words) for _ in range(rng.randint(1, 14))] for _ in range(n)]


def test_nbest_comes_from_the_emissions_of_the_tags(tmp_path, chunker):
    # In bf16 a second pass for n-best and marginals (which ran in fp32) disagreed with the
    # record's own tags on some sentences: every output of a call now comes from one pass.
    sentences = word_salad(400, 11)
    source = tmp_path / "in.conll"
    source.write_text("".join("\n".join(words) + "\n\n" for words in sentences), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "tag",
                str(chunker),
                str(source),
                "--input",
                "conll",
                "--format",
                "jsonl",
                "--nbest",
                "2",
                "--marginals",
                "--precision",
                "bf16",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(sentences)
    differ = [r for r in records if r["nbest"][0]["tags"] != [t["tag"] for t in r["tokens"]]]
    assert not differ, f"{len(differ)} of {len(records)} records"
    tagger = nlp_lstm.load(chunker, device="cpu").set_precision("bf16")
    assert all(tagger.nbest(words, 1)[0][0] == tagger.tag_tokens([words])[0] for words in sentences)


def test_marginals_come_from_the_emissions_of_the_tags(chunker):
    # The chunker read as a plain-label tagger with no transition scores: its Viterbi path
    # is then each word's best tag, which is each word's most probable tag, exactly, when
    # both come from the same emissions (in bf16, fp32 marginals disagreed).
    tagger = nlp_lstm.load(chunker, device="cpu").set_precision("bf16")
    tagger.scheme = tagger.corpus_scheme = "none"
    crf = tagger.model.crf
    with torch.no_grad():
        for table in (crf.transitions, crf.start, crf.end):
            table.zero_()
        for allowed in (crf.allowed, crf.allowed_start, crf.allowed_end):
            allowed.fill_(True)
    differ = 0
    for words in word_salad(400, 11):
        tags = tagger.tag_tokens([words])[0]
        differ += [max(p, key=p.get) for p in tagger.marginals(words)] != tags
    assert differ == 0


@pytest.mark.parametrize("corpus_scheme", ["iob2", "iob1"])
def test_marginals_are_over_the_corpus_scheme(chunker, corpus_scheme):
    """Against brute force over every tag sequence: P(the corpus-scheme tag at t), each
    sequence converted from the model's IOBES to the corpus's scheme. IOB2 sums S-X into
    B-X and E-X into I-X; IOB1's B-X depends on the tag before."""
    from nlp_lstm.data.tag_schemes import convert

    tagger = nlp_lstm.load(chunker, device="cpu").set_precision("fp32")
    tagger.corpus_scheme = corpus_scheme  # the model was trained on IOB2; IOB1 checks the same model read so
    words = ["the", "dog", "Bob", "Alice"]
    _, _, sequences, probs = _every_sequence(tagger, words)
    itos = tagger.vocabs.tags.get_itos()
    expected = [dict.fromkeys(tagger.labels, 0.0) for _ in words]
    for seq, p in zip(sequences.tolist(), probs.tolist()):
        if p > 1e-12:  # forbidden sequences have probability 0 (and may not convert back)
            for t, tag in enumerate(convert([itos[i] for i in seq], "iobes", corpus_scheme)):
                expected[t][tag] += p
    marginals = tagger.marginals(words)
    assert all(set(m) == set(tagger.labels) for m in marginals)  # no E- or S- tags in IOB1/IOB2
    assert not any(k.startswith(("E-", "S-")) for k in marginals[0])
    for got, want in zip(marginals, expected):
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-6)
        for tag in tagger.labels:
            assert got[tag] == pytest.approx(want[tag], abs=1e-6), tag
    # the CLI's --marginals gives the same (the corpus's) tags
    assert set(tagger.predict_inputs([InputSentence(words, {})], marginals=True)[0].marginals[0]) == set(tagger.labels)


def test_tag_and_evaluate_give_the_same_tags_with_their_defaults(tmp_path, chunker, monkeypatch):
    # `tag` defaulted to auto (bf16 on a CPU with bf16 units) and `evaluate` to fp32: the
    # same file got different tags from the two commands. One default (auto) for both, and
    # for nlp_lstm.load. Untimed, with the probe saying "bf16 units" whatever this CPU has,
    # auto means bf16 here too (bf16 autocast runs on any CPU, only slower without them).
    from nlp_lstm import device as precision
    from nlp_lstm.speed_choices import MODE_ENV

    monkeypatch.setenv(MODE_ENV, "off")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    labelled = tmp_path / "gold.conll"
    labelled.write_text(
        "".join("".join(f"{w} O\n" for w in words) + "\n" for words in word_salad(400, 11)), encoding="utf-8"
    )
    tagged, predictions = tmp_path / "tagged.conll", tmp_path / "pred.conll"
    assert main(["tag", str(chunker), str(labelled), "--input", "conll", "--output", str(tagged)]) == 0
    assert main(["evaluate", str(chunker), str(labelled), "--predictions", str(predictions)]) == 0
    from_tag = [line.split("\t")[1] for line in tagged.read_text().splitlines() if line and not line.startswith("#")]
    from_evaluate = [line.split(" ")[2] for line in predictions.read_text().splitlines() if line]
    assert len(from_tag) == len(from_evaluate) > 0
    assert from_tag == from_evaluate
    assert nlp_lstm.load(chunker, device="cpu").precision == "bf16"
