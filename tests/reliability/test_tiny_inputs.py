"""Inputs too small to train on: one `error:` line naming the key or file, exit 2, no
traceback, no model left behind."""

from helpers.runs import run_train


def _assert_one_line_error(proc, *needles):
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_six_word_corpus_names_the_batch_size(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a b c d e f\n")
    proc = run_train(
        tmp_path / "run",
        ["data=text", f"data.train={text}", f"data.valid={text}", f"data.test={text}", "trainer.progress_bar=false"],
        tmp_path / "data",
        check=False,
    )
    _assert_one_line_error(proc, "config task.batch_size=20", "only 7 tokens")
    assert not (tmp_path / "run" / "model").exists()


def test_one_training_sentence_and_no_dev_split_is_named(tmp_path):
    tagged = tmp_path / "one.txt"
    tagged.write_text("the B-NP\ncat I-NP\n\n")
    proc = run_train(
        tmp_path / "run",
        [
            "task=tagging",
            "data=conll",
            f"data.train={tagged}",
            f"data.test={tagged}",
            "data.tag_column=1",
            "trainer.progress_bar=false",
        ],
        tmp_path / "data",
        check=False,
    )
    _assert_one_line_error(proc, str(tagged), "give data.valid")
    assert not (tmp_path / "run" / "model").exists()
