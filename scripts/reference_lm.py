#!/usr/bin/env python
"""PyTorch's word_language_model example (main.py, as published), run for a wall-clock
budget on this project's WikiText-2 tokenisation, then scored on valid and test: the
reference the default `python train.py` is compared with (BENCHMARKS.md, issue 13).

    python scripts/reference_lm.py --minutes 10 --threads 1

What the example does, kept as it is: 2 x 200 LSTM, dropout 0.2, untied, full softmax,
SGD lr 20 without momentum, gradient clipping 0.25, BPTT 35, batch 20 (eval batch 10),
lr / 4 after an epoch without a better valid loss, fp32. The budget counts training
time only (the example's per-epoch validations included), like trainer.max_time; the
final valid/test scoring comes after it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nlp_lstm.bench import TextbookLM  # noqa: E402
from nlp_lstm.data.lm_corpus import prepare_lm_corpus  # noqa: E402
from nlp_lstm.train_entry import compose_config  # noqa: E402


def batchify(ids, batch_size: int) -> torch.Tensor:
    data = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    n = data.numel() // batch_size
    return data[: n * batch_size].view(batch_size, -1).t().contiguous()  # (time, batch), as the example


def evaluate(model, data: torch.Tensor, bptt: int) -> float:
    model.eval()
    total, count, hidden = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            seq = min(bptt, data.size(0) - 1 - i)
            x, y = data[i : i + seq], data[i + 1 : i + 1 + seq]
            logits, hidden = model(x, hidden)
            total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1111)  # the example's default
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = compose_config([], output_dir="/tmp/reference_lm")  # the default run's corpus and tokeniser
    corpus = prepare_lm_corpus(cfg.data, cfg.tokenizer, cfg.paths.data_dir, log=lambda m: None)
    train, valid, test = (batchify(corpus.ids[s], b) for s, b in (("train", 20), ("valid", 10), ("test", 10)))
    model = TextbookLM("lstm", corpus.tokenizer.vocab_size, 200, 200, 2, 0.2, False)
    lr, bptt, budget = 20.0, 35, args.minutes * 60
    best_val, steps, spent, epoch = None, 0, 0.0, 0
    while spent < budget:
        epoch += 1
        model.train()
        hidden = None
        for i in range(0, train.size(0) - 1, bptt):
            start = time.perf_counter()
            seq = min(bptt, train.size(0) - 1 - i)
            x, y = train[i : i + seq], train[i + 1 : i + 1 + seq]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            model.zero_grad()
            logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            steps += 1
            spent += time.perf_counter() - start
            if spent >= budget:
                break
        else:
            start = time.perf_counter()
            val = evaluate(model, valid, bptt)
            if best_val is not None and val >= best_val:
                lr /= 4.0
            best_val = val if best_val is None else min(best_val, val)
            spent += time.perf_counter() - start
    valid_loss, test_loss = evaluate(model, valid, bptt), evaluate(model, test, bptt)
    print(
        json.dumps(
            {
                "steps": steps,
                "epochs": round(steps * bptt / train.size(0), 2),
                "train_seconds": round(spent),
                "threads": torch.get_num_threads(),
                "valid_ppl": round(math.exp(valid_loss), 1),
                "test_ppl": round(math.exp(test_loss), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
