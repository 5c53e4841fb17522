"""Greedy ensemble selection: hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_refine.refine import greedy_ensemble_weights


def test_a_model_right_on_every_cell_takes_all_the_weight():
    codes = np.array([0, 1, 0, 1])
    good = np.eye(2)[codes] * 0.9 + 0.05  # 0.95 on the true class
    bad = np.full((4, 2), 0.5)
    # the mean with the uninformative model is always worse than the good model alone
    np.testing.assert_array_equal(greedy_ensemble_weights([bad, good], codes, rounds=7), [0, 1])


def test_two_complementary_models_share_the_weight_equally():
    # A is sure and right on cells 0-1 and unsure on 2-3, B the other way round. Alone each has log-loss
    # (-log 0.99 - log 0.5) / 2 = 0.352; their mean puts 0.745 on every true class (log-loss 0.294), so
    # round 1 picks A (the tie goes to the earlier), round 2 B, round 3 A or B tie -> A, round 4 B.
    codes = np.array([0, 0, 1, 1])
    a = np.array([[0.99, 0.01], [0.99, 0.01], [0.5, 0.5], [0.5, 0.5]])
    b = np.array([[0.5, 0.5], [0.5, 0.5], [0.01, 0.99], [0.01, 0.99]])
    np.testing.assert_allclose(greedy_ensemble_weights([a, b], codes, rounds=4), [0.5, 0.5])
    np.testing.assert_allclose(greedy_ensemble_weights([a, b], codes, rounds=3), [2 / 3, 1 / 3])


def test_weights_follow_the_validation_loss_of_each_round_by_hand():
    # one cell of class 0; models put p = 0.9, 0.6, 0.2 on it. Round 1: 0.9 (log-loss 0.105). Round 2: the
    # best mean with 0.9 is 0.9 itself (0.9 > 0.75 > 0.55): a single model, weight 1.
    codes = np.array([0])
    probas = [np.array([[p, 1 - p]]) for p in (0.6, 0.9, 0.2)]
    np.testing.assert_array_equal(greedy_ensemble_weights(probas, codes, rounds=5), [0, 1, 0])


def test_bad_input_is_refused():
    codes = np.array([0, 1])
    with pytest.raises(ValueError, match="empty"):
        greedy_ensemble_weights([], codes)
    with pytest.raises(ValueError, match="rounds"):
        greedy_ensemble_weights([np.full((2, 2), 0.5)], codes, rounds=0)
    with pytest.raises(ValueError, match="2 cells"):
        greedy_ensemble_weights([np.full((2, 2), 0.5), np.full((3, 2), 0.5)], codes)
