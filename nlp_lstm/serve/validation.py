"""Request bodies checked by hand into small records, each mistake one line naming the
field and what was found (HTTP 400): a client learns what to fix from the first answer."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

MAX_GENERATE_TOKENS = 2048  # one request may hold the model thread only so long
MAX_NBEST = 100


class BadRequest(Exception):
    """The request is malformed: the message says what is wrong, in one line."""


@dataclass(frozen=True)
class TagRequest:
    texts: Optional[List[str]]  # raw text, tokenized as `nlp-lstm tag` does...
    tokens: Optional[List[List[str]]]  # ...or token lists
    split_sentences: bool
    nbest: Optional[int]
    marginals: bool


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_tokens: int
    temperature: float
    top_k: Optional[int]
    top_p: Optional[float]
    seed: Optional[int]


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _object(value: Any, fields: Dict[str, str]) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object with {', '.join(fields)}; got {_type_name(value)}")
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (this route reads {', '.join(fields)})")
    return value


def _strings(value: Any, name: str) -> List[str]:
    if not isinstance(value, list):
        raise BadRequest(f"{name} must be a list of strings; got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRequest(f"{name}[{i}] must be a string; got {_type_name(item)}")
    return value


def _flag(body: Dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false; got {_type_name(value)}")
    return value


def _integer(
    body: Dict[str, Any], name: str, default: Optional[int], low: Optional[int] = None, high: Optional[int] = None
) -> Optional[int]:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer; got {_type_name(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise BadRequest(f"{name} must be {bounds}; got {value}")
    return value


def _number(body: Dict[str, Any], name: str, default: Optional[float]) -> Optional[float]:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number; got {json.dumps(value)}")
    return float(value)


TAG_FIELDS = {
    "texts": "raw sentences",
    "tokens": "token lists",
    "split_sentences": "texts are paragraphs",
    "nbest": "k best sequences",
    "marginals": "per-token tag probabilities",
}


def tag_request(value: Any) -> TagRequest:
    body = _object(value, TAG_FIELDS)
    if ("texts" in body) == ("tokens" in body):
        raise BadRequest(
            'give either "texts" (raw sentences) or "tokens" (token lists), not '
            + ("both" if "texts" in body else "neither")
        )
    texts = _strings(body["texts"], "texts") if "texts" in body else None
    tokens = None
    if "tokens" in body:
        if not isinstance(body["tokens"], list):
            raise BadRequest(f"tokens must be a list of token lists; got {_type_name(body['tokens'])}")
        tokens = [_strings(sentence, f"tokens[{i}]") for i, sentence in enumerate(body["tokens"])]
        for i, sentence in enumerate(tokens):
            for j, token in enumerate(sentence):
                if not token.strip():
                    raise BadRequest(f"tokens[{i}][{j}] is empty or whitespace: a token needs a character")
    split = _flag(body, "split_sentences")
    if split and tokens is not None:
        raise BadRequest("split_sentences splits raw text: it goes with texts, not tokens")
    return TagRequest(texts, tokens, split, _integer(body, "nbest", None, 1, MAX_NBEST), _flag(body, "marginals"))


def score_request(value: Any) -> List[str]:
    body = _object(value, {"texts": "the texts to score"})
    if "texts" not in body:
        raise BadRequest('missing field "texts" (a list of strings)')
    return _strings(body["texts"], "texts")


GENERATE_FIELDS = {"prompt": "", "max_tokens": "", "temperature": "", "top_k": "", "top_p": "", "seed": ""}


def generate_request(value: Any) -> GenerateRequest:
    body = _object(value, GENERATE_FIELDS)
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise BadRequest(f"prompt must be a string; got {_type_name(prompt)}")
    temperature = _number(body, "temperature", 1.0)
    if temperature < 0:
        raise BadRequest(f"temperature must be >= 0 (0 is greedy); got {temperature}")
    top_p = _number(body, "top_p", None)
    if top_p is not None and not 0 < top_p <= 1:
        raise BadRequest(f"top_p must be in (0, 1]; got {top_p}")
    return GenerateRequest(
        prompt,
        _integer(body, "max_tokens", 50, 1, MAX_GENERATE_TOKENS),
        temperature,
        _integer(body, "top_k", None, 1),
        top_p,
        _integer(body, "seed", None, 0, 2**63 - 1),
    )
