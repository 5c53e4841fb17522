"""scikit-learn's own estimator checks (``check_estimator``) on the generic REFINE estimators.

Run on strategies that need no frozen source (the checks pass plain arrays only): the estimators' input
validation, fitted attributes, tags, pickling, cloning and training quality are scikit-learn's."""

from __future__ import annotations

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
