"""REFINE's ensemble selection bagged over bootstrap samples of the validation cells?

With a few hundred labelled cells REFINE's ensemble selection judges its fits on a validation fifth of a few dozen
cells, and greedy selection then often gives one fit all the weight on the strength of a handful of cells. Caruana
et al. (2004) curb overfitting of the selection by bagging (there, random subsets of the model library); with four
fits, this diagnostic bags the selection cells instead: the package's greedy selection on ``BAGS`` bootstrap
samples of the validation cells (seeded by the training ``random_state``), the mean of their weights. The rule wraps
:meth:`RefineAnnotator._ensemble_weights` here; the package is unchanged.

It trains the default REFINE with the rule on seeds 5-9 (same labelled and test cells as
``spatial_seed_replication.md``) and compares, on those seeds, with the replication's default REFINE fits and with
the best baseline chosen on seeds 0-4; its runs on seeds 0-4 are paired with the package's selection re-run on
the same machine (``--package-default``; the committed fits of those seeds ran on another one).

    python benchmarks/diagnose_bagged_selection.py --task osmfish-cluster --n 100 300 --seeds 5 6 7 8 9 --out part.csv
    python benchmarks/diagnose_bagged_selection.py --task osmfish-cluster --n 100 300 --seeds 0 1 2 3 4 --out part0.csv
    python benchmarks/diagnose_bagged_selection.py --task osmfish-cluster --n 100 300 --seeds 0 1 2 3 4 --package-default --out d0.csv
    python benchmarks/diagnose_bagged_selection.py --report part.csv part0.csv ... --default-runs d0.csv ... \\
        --replication-runs replication-before.csv --committed-runs committed-before.csv
    # the committed report compared with the runs as they were before `refit=True` became the default:
    # git show 2105a27:benchmarks/results/spatial_seed_replication-runs.csv > replication-before.csv
    # git show 2105a27:benchmarks/results/spatial_annotation-runs.csv > committed-before.csv
    # -> benchmarks/results/diagnose_bagged_selection.{md,csv}
"""

from __future__ import annotations

import numpy as np
from spatial_seed_replication import variant_main

from spatial_refine.annotator import ENSEMBLE_ROUNDS
from spatial_refine.refine import greedy_ensemble_weights

#: bootstrap samples of the validation cells, each selecting an ensemble
BAGS = 25


def bagged_weights(val_probas: list[np.ndarray], codes: np.ndarray, *, bags: int = BAGS,
                   rounds: int = ENSEMBLE_ROUNDS, random_state: int = 0) -> np.ndarray:
    """Mean over ``bags`` bootstrap samples of the cells of the greedy ensemble weights chosen on each sample."""
    rng = np.random.default_rng(random_state)
    total = np.zeros(len(val_probas))
    for _ in range(bags):
        cells = rng.integers(0, len(codes), size=len(codes))
        total += greedy_ensemble_weights([p[cells] for p in val_probas], codes[cells], rounds=rounds)
    return total / bags


def bagged_selection(annotator, fits: dict, val_pos: np.ndarray, weights: dict) -> dict[str, float]:
    """Ensemble weights averaged over bootstrap samples of the validation cells (``weights``, the package's choice
    on all of them, is ignored)."""
    names = list(fits)
    if len(names) == 1:
        return weights
    chosen = bagged_weights([fits[n].val_proba for n in names], annotator.codes_[val_pos],
                            random_state=annotator.train_settings_["random_state"])
    return {n: float(w) for n, w in zip(names, chosen, strict=True)}


def main(argv: list[str] | None = None) -> None:
    variant_main(argv, __doc__, "diagnose_bagged_selection", "refine_bagged", bagged_selection,
                 "REFINE's ensemble selection bagged over bootstrap samples of the validation cells",
                 f"greedy ensemble selection runs on {BAGS} bootstrap samples of the validation cells and the fits "
                 "get the mean of the weights chosen on them, instead of the weights chosen on all validation cells "
                 "once.")


if __name__ == "__main__":
    main()
