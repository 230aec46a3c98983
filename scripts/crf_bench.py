"""Time the CRF (Viterbi; NLL forward + backward) on a tagger-sized batch, optionally beside
the CRF of another git revision on the same inputs (results checked equal):

    python scripts/crf_bench.py --against 2921dc0
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nlp_lstm.models.crf import CRF

ROOT = Path(__file__).resolve().parent.parent


def crf_of_revision(revision: str):
    source = subprocess.run(
        ["git", "show", f"{revision}:nlp_lstm/models/crf.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "crf_other.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("crf_other", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CRF


def timed(f, repeat: int) -> float:
    f()
    start = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="git revision whose CRF runs beside this one")
    parser.add_argument("--tags", type=int, default=45)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    n, b, t = args.tags, args.batch, args.length
    models = {"this": CRF(n)}
    if args.against:
        models[args.against] = crf_of_revision(args.against)(n)
    with torch.no_grad():
        transitions = torch.randn(n, n)
        for model in models.values():
            model.transitions.copy_(transitions)
    emissions = torch.randn(b, t, n)
    lengths = torch.randint(1, t + 1, (b,))
    lengths[0] = t
    mask = torch.arange(t)[None] < lengths[:, None]
    tags = torch.randint(0, n, (b, t))

    def nll(model):
        e = emissions.clone().requires_grad_()
        model.nll(e, tags, mask).backward()
        return e.grad

    results = {}
    for name, model in models.items():
        with torch.no_grad():
            paths = model.viterbi(emissions, mask)
            viterbi = timed(lambda model=model: model.viterbi(emissions, mask), args.repeat)
        results[name] = (paths, nll(model), viterbi, timed(lambda model=model: nll(model), args.repeat))
    print(f"batch {b}, length <= {t}, {n} tags, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, (_, _, viterbi, loss) in results.items():
        print(f"{name:>12}: viterbi {viterbi:7.1f} ms   nll forward+backward {loss:7.1f} ms")
    if args.against:
        (p1, g1, v1, l1), (p2, g2, v2, l2) = results.values()
        assert p1 == p2, "different Viterbi paths"
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
        print(
            f"{'speed-up':>12}: viterbi {v2 / v1:.2f}x   nll forward+backward {l2 / l1:.2f}x "
            "(same paths, same gradients)"
        )


if __name__ == "__main__":
    sys.exit(main())
