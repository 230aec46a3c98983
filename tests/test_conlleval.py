"""conlleval semantics on hand-made cases whose conlleval.pl output is worked out by hand
from the script's rules (comments give the counts conlleval prints)."""

import pytest

from nlp_lstm.metrics import confusion_matrix, conlleval, strict_span_f1


def test_perfect_prediction():
    gold = [["B-NP", "I-NP", "O", "B-VP"]]
    r = conlleval(gold, gold)
    assert (r["precision"], r["recall"], r["f1"], r["acc"]) == (100, 100, 100, 100)
    assert (r["chunks_gold"], r["chunks_predicted"], r["chunks_correct"]) == (2, 2, 2)


def test_split_chunk_is_wrong():
    # processed 2 tokens with 1 phrases; found: 2 phrases; correct: 0.
    r = conlleval([["B-NP", "I-NP"]], [["B-NP", "B-NP"]])
    assert (r["chunks_gold"], r["chunks_predicted"], r["chunks_correct"]) == (1, 2, 0)
    assert r["f1"] == 0 and r["acc"] == 50


def test_i_after_o_starts_a_chunk_but_costs_accuracy():
    # conlleval reads O I-NP as a chunk start: the chunk is correct, the tag is not.
    r = conlleval([["O", "I-NP", "I-NP"]], [["O", "B-NP", "I-NP"]])
    assert r["chunks_correct"] == 1 and r["f1"] == 100
    assert r["acc"] == pytest.approx(200 / 3)


def test_type_change_and_overlong_chunk():
    r = conlleval([["B-NP", "I-NP"], ["B-NP", "I-NP", "O"]], [["B-NP", "I-VP"], ["B-NP", "I-NP", "I-NP"]])
    # sentence 1: gold NP[0,2); predicted NP[0,1), VP[1,2). sentence 2: NP[0,2) vs NP[0,3)
    assert (r["chunks_gold"], r["chunks_predicted"], r["chunks_correct"]) == (2, 3, 0)


def test_counts_precision_recall_f1_per_label_and_macro():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG", "O", "B-ORG"]]
    r = conlleval(gold, pred)
    # found 3 gold, 3 predicted, 2 correct: P = R = 66.67
    assert r["precision"] == pytest.approx(200 / 3) and r["recall"] == pytest.approx(200 / 3)
    assert r["per_label"]["PER"]["f1"] == 100
    assert r["per_label"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["per_label"]["ORG"]["precision"] == 50 and r["per_label"]["ORG"]["recall"] == 100
    assert r["macro_f1"] == pytest.approx((100 + 0 + 200 / 3) / 3)


def test_sentence_boundary_ends_chunks():
    # the chunk at the end of sentence 1 must not merge with I-NP at the start of sentence 2
    gold = [["B-NP", "I-NP"], ["I-NP", "O"]]
    r = conlleval(gold, gold)
    assert r["chunks_gold"] == 2 and r["chunks_correct"] == 2


def test_label_never_seen_in_training_is_an_error_not_a_crash():
    r = conlleval([["B-LST", "O"]], [["O", "O"]])
    assert r["chunks_gold"] == 1 and r["recall"] == 0 and r["per_label"]["LST"]["support"] == 1


def test_strict_mode_ignores_ill_formed_chunks():
    gold = [["O", "B-NP", "I-NP"]]
    lenient_pred = [["O", "I-NP", "I-NP"]]
    assert conlleval(gold, lenient_pred)["f1"] == 100
    assert strict_span_f1(gold, lenient_pred, "iob2")["f1"] == 0


def test_confusion_matrix_counts_tokens():
    m = confusion_matrix([["A", "B", "B"]], [["A", "A", "C"]], ["A", "B"])
    assert m == [[1, 0, 0], [1, 0, 1], [0, 0, 0]]


# ------------------------------------------------------------------ IOBES
def test_iobes_chunks_close_at_e_and_s():
    # B-X E-X S-X is two chunks; read with IOB rules, E-X S-X merged them (F1 50 against itself)
    gold = [["B-X", "E-X", "S-X"], ["S-X", "B-X", "I-X", "E-X", "S-Y"]]
    r = conlleval(gold, gold, "iobes")
    assert (r["chunks_gold"], r["chunks_correct"], r["f1"]) == (5, 5, 100)


def test_iobes_boundary_errors_count():
    # gold: X[0,2) X[2,3); predicted one chunk X[0,3): 0 correct of 2 gold, 1 predicted
    r = conlleval([["B-X", "E-X", "S-X"]], [["B-X", "I-X", "E-X"]], "iobes")
    assert (r["chunks_gold"], r["chunks_predicted"], r["chunks_correct"]) == (2, 1, 0)


def _random_tags(rng, length: int, prefixes: str) -> list:
    return [rng.choice(["O"] + [f"{p}-{t}" for p in prefixes for t in ("NP", "VP")]) for _ in range(length)]


@pytest.mark.parametrize("scheme, prefixes", [("iobes", "BIES"), ("iob2", "BI"), ("iob1", "BI")])
def test_chunk_counts_match_seqeval_on_random_sequences(scheme, prefixes):
    """Cross-check against an independent implementation (seqeval's default, conlleval-style
    mode) on random, often ill-formed, sequences: same chunk counts, same F1."""
    import random

    from seqeval.metrics import f1_score
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(7)
    for _ in range(300):
        gold = [_random_tags(rng, rng.randint(1, 8), prefixes) for _ in range(rng.randint(1, 4))]
        pred = [[t if rng.random() < 0.7 else _random_tags(rng, 1, prefixes)[0] for t in s] for s in gold]
        r = conlleval(gold, pred, scheme)
        gold_chunks, pred_chunks = set(get_entities(gold)), set(get_entities(pred))
        assert r["chunks_gold"] == len(gold_chunks), (gold, pred)
        assert r["chunks_predicted"] == len(pred_chunks), (gold, pred)
        assert r["chunks_correct"] == len(gold_chunks & pred_chunks), (gold, pred)
        if gold_chunks and pred_chunks:
            assert r["f1"] == pytest.approx(100 * f1_score(gold, pred)), (gold, pred)
