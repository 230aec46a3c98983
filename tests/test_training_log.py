"""What a person reads while a run trains: train.log and the console, with and without a
terminal."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.paths import ROOT
from helpers.runs import run_train

PROGRESS = re.compile(r"step [\d,]+ \| epoch \d+ \d+% \| loss [\d.]+ ppl [\d.]+ \| lr [\d.e+-]+ \| [\d,]+ tokens/s")


def _overrides(corpus):
    bar_on = [o for o in TINY_MODEL if not o.startswith("trainer.progress_bar")] + ["trainer.progress_bar=true"]
    return (
        text_data_overrides(corpus)
        + bar_on
        + ["trainer.max_epochs=2", "trainer.max_time=null", "trainer.log_every_n_steps=5"]
    )


def test_train_log_has_a_progress_line_every_log_every_n_steps_and_no_bar_without_a_terminal(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, _overrides(text_corpus), tmp_path / "data")
    log = (run_dir / "train.log").read_text()
    lines = [line for line in log.splitlines() if PROGRESS.search(line)]
    steps = [int(re.search(r"step ([\d,]+)", line).group(1).replace(",", "")) for line in lines]
    assert steps and steps == list(range(5, 5 * len(steps) + 1, 5)), log[-2000:]
    assert "sentences {" not in log
    for output in (proc.stdout, proc.stderr):  # pipes: no bar, no carriage returns
        assert "%|" not in output and "\r" not in output
    assert any(PROGRESS.search(line) for line in proc.stdout.splitlines())  # the console has the lines instead


def test_on_a_terminal_the_bar_shows_and_stays_and_the_progress_lines_stay_in_the_file(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    env = {**os.environ, "NLP_LSTM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *_overrides(text_corpus)],
        cwd=ROOT,
        env=env,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=300) == 0, screen[-3000:]
    text = screen.decode("utf-8", "replace")
    assert "epoch 1: 100%" in text and "epoch 2: 100%" in text  # each epoch's bar stays
    assert not PROGRESS.search(text)  # the bar carries those numbers on a terminal
    assert PROGRESS.search((run_dir / "train.log").read_text())
    assert text.count("end of epoch 1 valid:") == 1  # log lines print once, above the bar
