"""REFINE's ensemble selection judged by the class-weighted validation log-loss that its fits are trained on?

REFINE's fits are trained with ``class_weight="effective"`` (every class counts about alike while it has at most a
few dozen labelled cells, as in macro-F1), but greedy ensemble selection weighs them by the plain mean log-loss of
the validation cells, which the common classes dominate. This diagnostic selects with the loss the fits were
trained on instead: each validation cell's log-loss weighted by its class's training weight
(:func:`spatial_refine.annotator.effective_number_weights` of the labelled cells' classes). The rule wraps
:meth:`RefineAnnotator._ensemble_weights` here; the package is unchanged.

It trains the default REFINE with the rule on seeds 5-9 (same labelled and test cells as
``spatial_seed_replication.md``) and compares, on those seeds, with the replication's default REFINE fits and with
the best baseline chosen on seeds 0-4; its runs on seeds 0-4 are paired with the package's selection re-run on
the same machine (``--package-default``; the committed fits of those seeds ran on another one).

    python benchmarks/diagnose_weighted_selection.py --task osmfish-cluster --n 100 300 --seeds 5 6 7 8 9 --out part.csv
    python benchmarks/diagnose_weighted_selection.py --task osmfish-cluster --n 100 300 --seeds 0 1 2 3 4 --out part0.csv
    python benchmarks/diagnose_weighted_selection.py --task osmfish-cluster --n 100 300 --seeds 0 1 2 3 4 --package-default --out d0.csv
    python benchmarks/diagnose_weighted_selection.py --report part.csv part0.csv ... --default-runs d0.csv ... \\
        --replication-runs replication-before.csv --committed-runs committed-before.csv
    # the committed report compared with the runs as they were before `refit=True` became the default:
    # git show 2105a27:benchmarks/results/spatial_seed_replication-runs.csv > replication-before.csv
    # git show 2105a27:benchmarks/results/spatial_annotation-runs.csv > committed-before.csv
    # -> benchmarks/results/diagnose_weighted_selection.{md,csv}
"""

from __future__ import annotations

import numpy as np
from spatial_seed_replication import variant_main

from spatial_refine.annotator import ENSEMBLE_ROUNDS, effective_number_weights


def weighted_greedy_weights(val_probas: list[np.ndarray], codes: np.ndarray, cell_weights: np.ndarray,
                            rounds: int = ENSEMBLE_ROUNDS) -> np.ndarray:
    """Greedy ensemble selection (as :func:`spatial_refine.refine.greedy_ensemble_weights`) on the weighted mean
    log-loss ``sum(w_i * loss_i) / sum(w_i)``; ties go to the earlier model."""
    rows = np.arange(len(codes))
    counts = np.zeros(len(val_probas), dtype=int)
    total = np.zeros_like(val_probas[0], dtype=np.float64)
    for step in range(1, rounds + 1):
        losses = [np.sum(cell_weights * -np.log(np.clip((total + p)[rows, codes] / step, 1e-12, None)))
                  / cell_weights.sum() for p in val_probas]
        best = int(np.argmin(losses))
        counts[best] += 1
        total += val_probas[best]
    return counts / rounds


def class_weighted_selection(annotator, fits: dict, val_pos: np.ndarray, weights: dict) -> dict[str, float]:
    """Ensemble weights chosen on the validation log-loss weighted by the effective-number class weights of the
    labelled cells (``weights``, the package's choice, is ignored)."""
    names = list(fits)
    if len(names) == 1:
        return weights
    class_weight = effective_number_weights(np.bincount(annotator.codes_, minlength=len(annotator.classes_)))
    codes = annotator.codes_[val_pos]
    chosen = weighted_greedy_weights([fits[n].val_proba for n in names], codes, class_weight[codes])
    return {n: float(w) for n, w in zip(names, chosen, strict=True)}


def main(argv: list[str] | None = None) -> None:
    variant_main(argv, __doc__, "diagnose_weighted_selection", "refine_weighted_sel", class_weighted_selection,
                 "REFINE's ensemble selection on the class-weighted validation log-loss",
                 "greedy ensemble selection weighs the fits by their validation log-loss with each cell weighted by "
                 "its class's training weight (`class_weight=\"effective\"`), instead of the plain mean.")


if __name__ == "__main__":
    main()
