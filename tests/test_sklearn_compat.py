"""scikit-learn's own estimator checks (``check_estimator``) on the generic REFINE estimators.

Run on strategies that need no frozen source (the checks pass plain arrays only): the estimators' input
validation, fitted attributes, tags, pickling, cloning and training quality are scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from spatial_refine import RefineClassifier, RefineRegressor

#: float32 networks: predicting a subset in other batches can change the last bits (~1e-7) of some outputs, for
#: the classifier's probabilities and the regressor's values alike (which one shows it depends on the BLAS
#: kernels chosen for the batch shapes: seen failing for the regressor with OMP_NUM_THREADS=1); not strict
_EXPECTED = {
    "check_methods_subset_invariance": "float32 outputs differ in the last bits between batch compositions",
}


@parametrize_with_checks([RefineClassifier("notrans"), RefineRegressor("notrans")],
                         expected_failed_checks=lambda est: _EXPECTED)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [RefineClassifier("notrans", max_epochs=20), RefineRegressor("notrans", max_epochs=20)])
def test_predictions_on_a_subset_match_up_to_float32_rounding(estimator):
    # the check above is expected to fail only in the last bits: a real dependence on the batch (e.g. batch
    # statistics at prediction time) would move outputs far more than float32 rounding
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) if isinstance(estimator, RefineClassifier) else X[:, 0] + 0.1 * X[:, 1]
    estimator.fit(X, y)
    method = estimator.predict_proba if isinstance(estimator, RefineClassifier) else estimator.predict
    subset = np.arange(0, 60, 3)
    np.testing.assert_allclose(method(X[subset]), method(X)[subset], rtol=1e-5, atol=1e-6)
