"""A full disk (here: the file-size limit, which fails writes the same way) during a
checkpoint or metrics write: one line naming the file, and the previous file intact."""

import subprocess
import sys

from helpers.paths import ROOT

SCRIPT = r"""
import resource, signal, sys, torch
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import atomic_write_json
from nlp_lstm.training.checkpoint import load_checkpoint, save_checkpoint
path, metrics = sys.argv[1], sys.argv[2]
save_checkpoint(path, {"model": {"w": torch.ones(4)}})          # the previous, good checkpoint
atomic_write_json(metrics, {"status": "running", "step": 1})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)                    # a write past the limit fails with EFBIG
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
for label, write in (("checkpoint", lambda: save_checkpoint(path, {"model": {"w": torch.ones(100_000)}})),
                     ("metrics", lambda: atomic_write_json(metrics, {"history": ["x" * 50_000]}))):
    try:
        write()
    except NlpLstmError as exc:
        print(label, "ERROR", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
print("checkpoint still", load_checkpoint(path)["model"]["w"].tolist())
print("metrics still", open(metrics).read().replace("\n", " "))
"""


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path):
    checkpoint, metrics = tmp_path / "last.pt", tmp_path / "metrics.json"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(checkpoint), str(metrics)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == (
        f"checkpoint ERROR {checkpoint}: cannot write (File too large); the previous version, if any, is intact"
    )
    assert out[1].startswith(f"metrics ERROR {metrics}: cannot write (File too large)")
    assert out[2] == "checkpoint still [1.0, 1.0, 1.0, 1.0]"
    assert '"step": 1' in out[3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.json"]  # no temporaries left
