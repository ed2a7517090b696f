"""The inference-time scoring rules of experiments/pretrained/rescoring.py: a photo's (or a text's)
pull on a bank, as the mean of its nearest cosines and as a log-sum-exp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .scripts import load_script

rescoring = load_script("pretrained/rescoring.py")


def test_hubness_is_the_mean_of_the_k_nearest_bank_cosines():
    items = np.eye(2)
    bank = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    # item 0's cosines to the bank: 1, 0.6, 0, 0.8 -> the best two 1 and 0.8
    assert rescoring.hubness(items, bank, 2).tolist() == pytest.approx([0.9, 0.9])
    assert rescoring.hubness(items, bank, 1).tolist() == pytest.approx([1.0, 1.0])


def test_log_mass_is_a_stable_log_sum_exp():
    rng = np.random.default_rng(0)
    items, bank = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    expected = torch.logsumexp(torch.from_numpy(50.0 * items @ bank.T), dim=1).numpy()
    assert rescoring.log_mass(items, bank, 50.0) == pytest.approx(expected)
    assert np.isfinite(rescoring.log_mass(items, bank, 1e4)).all()  # no overflow at large scales
