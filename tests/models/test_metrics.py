"""The metrics give the numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import (
    confusion,
    expected_calibration_error,
    macro_f1,
    macro_recall,
    spearman,
)

TRUE = np.array([0, 0, 1, 1, 2, 2])
PRED = np.array([0, 1, 1, 1, 2, 0])


def test_macro_f1_and_recall_by_hand():
    # F1: class 0 = 2*1/(2+1+1) = 0.5, class 1 = 2*2/(4+1+0) = 0.8, class 2 = 2*1/(2+0+1) = 2/3
    assert macro_f1(TRUE, PRED, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # recall: 1/2, 2/2, 1/2
    assert macro_recall(TRUE, PRED, 3) == pytest.approx(2 / 3)
    assert macro_f1(TRUE, TRUE, 3) == 1.0


def test_confusion_rows_are_truth_columns_predictions():
    assert confusion(TRUE, PRED, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_calibration_error_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    truth = np.array([0, 1, 0, 0])
    # bin (0.8, 0.9]: confidence 0.9, accuracy 0.5; bin (0.5, 0.6]: confidence 0.6, accuracy 1
    assert expected_calibration_error(probs, truth) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    sure = np.array([[1.0, 0.0, 0.0]])
    assert expected_calibration_error(sure, np.array([0])) == 0.0


def test_spearman_handles_ties_and_constants():
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    # ties: ranks of [1, 1, 2] are [1.5, 1.5, 3]
    assert spearman(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(0.8660254)
    assert spearman(np.array([5, 5, 5]), np.array([1, 2, 3])) == 0.0


def test_roc_auc_by_hand():
    from models.metrics import roc_auc

    truth = np.array([1, 1, 0, 0])
    assert roc_auc(truth, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert roc_auc(truth, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    # One positive (0.5) ties one negative (0.5): that pair counts half; 3.5 of 4 pairs.
    assert roc_auc(truth, np.array([0.9, 0.5, 0.5, 0.1])) == 0.875
    assert roc_auc(np.array([1, 1]), np.array([0.3, 0.4])) == 0.5
