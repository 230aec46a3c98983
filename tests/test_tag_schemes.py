import random

import pytest

from nlp_lstm.data.tag_schemes import (
    allowed_transition,
    check_tags,
    convert,
    spans_from_tags,
    strict_spans,
    tags_from_spans,
)
from nlp_lstm.errors import DataError


def random_spans(rng, length):
    spans, i = [], 0
    while i < length:
        if rng.random() < 0.5:
            n = rng.randint(1, 3)
            spans.append((rng.choice(["NP", "VP", "PER"]), i, min(length, i + n)))
            i += n
        else:
            i += 1
    return spans


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "iobes"])
def test_spans_round_trip_through_every_scheme(scheme):
    rng = random.Random(0)
    for _ in range(300):
        length = rng.randint(1, 12)
        spans = random_spans(rng, length)
        tags = tags_from_spans(spans, length, scheme)
        check_tags(tags, scheme)
        assert spans_from_tags(tags, scheme) == spans
        for other in ("iob1", "iob2", "iobes"):
            assert convert(convert(tags, scheme, other), other, scheme) == tags


def test_known_conversions():
    iob2 = ["B-NP", "I-NP", "B-NP", "O", "B-VP"]
    assert convert(iob2, "iob2", "iobes") == ["B-NP", "E-NP", "S-NP", "O", "S-VP"]
    assert convert(iob2, "iob2", "iob1") == ["I-NP", "I-NP", "B-NP", "O", "I-VP"]


def test_lenient_reading_of_i_after_o():
    assert spans_from_tags(["O", "I-NP", "I-NP"], "iob2") == [("NP", 1, 3)]
    assert strict_spans(["O", "I-NP", "I-NP"], "iob2") == []


def test_tags_that_do_not_fit_the_scheme():
    with pytest.raises(DataError, match="'E-NP' \\(token 2\\) does not fit data.tag_scheme=iob2"):
        check_tags(["B-NP", "E-NP"], "iob2")
    with pytest.raises(DataError, match="NN"):
        check_tags(["NN"], "iob2")
    check_tags(["NN", "VB"], "none")


def test_transition_constraints():
    assert not allowed_transition("O", "I-NP", "iob2")
    assert not allowed_transition("B-VP", "I-NP", "iob2")
    assert allowed_transition("B-NP", "I-NP", "iob2")
    assert not allowed_transition("START", "I-NP", "iob2")
    assert not allowed_transition("B-NP", "O", "iobes") and not allowed_transition("I-NP", "END", "iobes")
    assert allowed_transition("E-NP", "S-VP", "iobes") and not allowed_transition("O", "E-NP", "iobes")
