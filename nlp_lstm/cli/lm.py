"""`nlp-lstm generate` and `nlp-lstm score`: a language model's text and numbers."""

from __future__ import annotations

import json

from nlp_lstm.inference import load


def generate(args) -> None:
    model = load_lm(args.model, args.device)
    print(model.generate(args.prompt, args.max_tokens, args.temperature, args.top_k, args.top_p, args.seed))


def load_lm(path: str, device: str):
    return load(path, device, kind="lm")


def score(args) -> None:
    model = load_lm(args.model, args.device)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    print(json.dumps({"file": args.file, **model.score_file(args.file, args.batch_size, progress)}))
