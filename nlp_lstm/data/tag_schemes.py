"""Span tag schemes: IOB1, IOB2 (BIO) and IOBES, with conversion through spans.

A span is (label, start, end) with `end` exclusive. Converting a sequence from one scheme
to another goes tags -> spans -> tags, so every conversion round-trips on valid input.
`none` means plain per-token labels (POS tags): no spans, no conversion.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

from nlp_lstm.errors import DataError

Span = Tuple[str, int, int]
SCHEMES = ("none", "iob1", "iob2", "iobes")


def split_tag(tag: str) -> Tuple[str, str]:
    """'B-NP' -> ('B', 'NP'); 'O' -> ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not label:
        return "", tag
    return prefix, label


def check_tags(tags: Sequence[str], scheme: str, path: str = "", lines: Optional[Sequence[int]] = None) -> None:
    """Raise DataError when a tag cannot occur in `scheme` (e.g. E-X in IOB2), naming `path`
    and the bad tag's own line (`lines`: each token's line in the file)."""
    if scheme == "none":
        return
    allowed = {"iob1": "BIO", "iob2": "BIO", "iobes": "BIOES"}[scheme]
    for i, tag in enumerate(tags):
        prefix, _ = split_tag(tag)
        if prefix == "" or prefix not in allowed:
            where = f"{path}:{lines[i]}: " if lines else f"{path}: " if path else ""
            raise DataError(f"{where}tag {tag!r} (token {i + 1}) does not fit data.tag_scheme={scheme}")


def spans_from_tags(tags: Sequence[str], scheme: str) -> List[Span]:
    """Spans of a tag sequence, read leniently as conlleval does: B (and S) always begin a
    span; an I or E continues the open span of its type, or else begins one (an I-X after O
    is a span, not an error). IOB1 and IOB2 read the same way; IOBES closes at E and S."""
    spans: List[Span] = []
    start, label = None, None

    def close(end: int) -> None:
        nonlocal start, label
        if start is not None:
            spans.append((label, start, end))
            start, label = None, None

    for i, tag in enumerate(tags):
        prefix, typ = split_tag(tag)
        if prefix in ("O", ""):
            close(i)
            continue
        if not (start is not None and typ == label and prefix in ("I", "E")):
            close(i)
            start, label = i, typ
        if scheme == "iobes" and prefix in ("E", "S"):
            close(i + 1)
    close(len(tags))
    return spans


def strict_spans(tags: Sequence[str], scheme: str) -> List[Span]:
    """Only the well-formed spans: those that begin with B (or S) in IOB2/IOBES and, in
    IOBES, end with E (or are a single S)."""
    if scheme in ("none", "iob1"):
        return spans_from_tags(tags, scheme)
    out = []
    for label, start, end in spans_from_tags(tags, scheme):
        first = split_tag(tags[start])[0]
        last = split_tag(tags[end - 1])[0]
        if scheme == "iob2" and first == "B":
            out.append((label, start, end))
        elif scheme == "iobes" and ((first == "S" and end - start == 1) or (first == "B" and last == "E")):
            out.append((label, start, end))
    return out


def tags_from_spans(spans: Iterable[Span], length: int, scheme: str) -> List[str]:
    tags = ["O"] * length
    ordered = sorted(spans, key=lambda s: s[1])
    for index, (label, start, end) in enumerate(ordered):
        if scheme == "iobes":
            if end - start == 1:
                tags[start] = f"S-{label}"
            else:
                tags[start] = f"B-{label}"
                tags[start + 1:end - 1] = [f"I-{label}"] * (end - start - 2)
                tags[end - 1] = f"E-{label}"
            continue
        first = "B"
        if scheme == "iob1":
            # IOB1 uses B only where a span directly follows one of the same type.
            previous = ordered[index - 1] if index else None
            first = "B" if previous and previous[2] == start and previous[0] == label else "I"
        tags[start] = f"{first}-{label}"
        tags[start + 1:end] = [f"I-{label}"] * (end - start - 1)
    return tags


def convert(tags: Sequence[str], source: str, target: str) -> List[str]:
    if source == target or "none" in (source, target):
        return list(tags)
    return tags_from_spans(spans_from_tags(tags, source), len(tags), target)


def allowed_transition(previous: str, current: str, scheme: str) -> bool:
    """Whether `current` may follow `previous` in a valid sequence (start = previous 'START',
    end = current 'END'). Used to constrain the CRF."""
    if scheme == "none":
        return True
    p_prefix, p_type = ("O", "") if previous == "START" else split_tag(previous)
    c_prefix, c_type = ("O", "") if current == "END" else split_tag(current)
    if scheme == "iob2":
        return not (c_prefix == "I" and (p_prefix == "O" or p_type != c_type))
    if scheme == "iob1":
        return not (c_prefix == "B" and p_type != c_type)
    # iobes
    inside = p_prefix in ("B", "I")
    if inside:
        return c_prefix in ("I", "E") and c_type == p_type
    return c_prefix in ("B", "S", "O")
