"""The report's NumPy ROC curve equals scikit-learn's (the evaluation plots draw it without scikit-learn)."""

import numpy as np
from sklearn.metrics import auc
from sklearn.metrics import roc_curve as sklearn_roc_curve

from edge_fer.report.metrics import roc_auc, roc_curve


def test_roc_curve_equals_scikit_learns_with_ties():
    rng = np.random.default_rng(3)
    for n in (2, 3, 17, 300):
        for _ in range(20):
            positives = rng.random(n) < 0.4
            positives[:2] = True, False  # both kinds present
            scores = np.round(rng.random(n) * 6) / 6  # many ties
            fpr, tpr = roc_curve(positives, scores)
            want_fpr, want_tpr, _ = sklearn_roc_curve(positives, scores, drop_intermediate=False)
            np.testing.assert_allclose(fpr, want_fpr, atol=1e-12)
            np.testing.assert_allclose(tpr, want_tpr, atol=1e-12)
            assert abs(auc(fpr, tpr) - roc_auc(positives, scores)) < 1e-12


def test_roc_curve_of_a_perfect_and_a_reversed_score():
    positives = np.array([True, True, False, False])
    fpr, tpr = roc_curve(positives, np.array([0.9, 0.8, 0.2, 0.1]))
    assert fpr.tolist() == [0, 0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1, 1]
    fpr, tpr = roc_curve(positives, np.array([0.1, 0.2, 0.8, 0.9]))
    assert fpr.tolist() == [0, 0.5, 1, 1, 1] and tpr.tolist() == [0, 0, 0, 0.5, 1]
