import random

import numpy as np
import torch

from nlp_lstm.data.lm_batches import IGNORE_INDEX, TrainStream, eval_batches, gather_windows, window_length

EOS = 0


def shifted_pairs(ids, eos_id, reverse=False):
    """The whole stream's (inputs, targets)."""
    x, y = gather_windows(ids, np.arange(len(ids))[None, :], eos_id, reverse)
    return x[0], y[0]


def test_shifted_pairs_predict_every_token_from_a_line_start():
    ids = np.array([5, 6, EOS, 7, EOS])
    x, y = shifted_pairs(ids, EOS)
    assert x.tolist() == [EOS, 5, 6, EOS, 7]
    assert y.tolist() == [5, 6, EOS, 7, EOS]
    xb, yb = shifted_pairs(ids, EOS, reverse=True)
    assert yb.tolist() == [EOS, 7, EOS, 6, 5]
    assert xb.tolist() == [EOS, EOS, 7, EOS, 6]


def test_eval_batches_score_every_token_exactly_once():
    ids = np.arange(1, 104)  # 103 tokens: not a multiple of the batch size
    targets = []
    for x, y in eval_batches(ids, EOS, batch_size=7, bptt=5):
        assert x.shape == y.shape and x.size(0) == 7
        targets.extend(y[y != IGNORE_INDEX].tolist())
    assert sorted(targets) == ids.tolist()


def test_eval_rows_are_contiguous_text():
    ids = np.arange(1, 41)
    rows = torch.cat([y for _, y in eval_batches(ids, EOS, batch_size=4, bptt=3)], dim=1)
    assert rows[1].tolist() == list(range(11, 21))


def test_train_stream_rows_and_windows():
    ids = np.arange(1, 24)  # 23 tokens, batch 5: 3 left out
    stream = TrainStream(ids, EOS, batch_size=5)
    assert stream.left_out == 3 and stream.length == 4
    x, y = stream.window(0, 3)
    assert y[0].tolist() == [1, 2, 3] and x[0].tolist() == [EOS, 1, 2]
    assert y[1].tolist() == [5, 6, 7]
    x, y = stream.window(3, 3)  # the last, shorter window
    assert y.shape == (5, 1)


def test_variable_bptt_lengths():
    rng = random.Random(0)
    lengths = [window_length(70, True, rng) for _ in range(2000)]
    assert min(lengths) >= 5
    assert 60 < np.mean(lengths) < 70  # mostly 70, sometimes 35
    assert sum(1 for n in lengths if n < 50) > 40
    assert window_length(70, False, rng) == 70
