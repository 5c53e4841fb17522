"""REFINE's predictions smoothed over the spatial graph, the strength chosen on validation?

REFINE predicts each cell from its own expression, its neighbourhood's mean expression (the hop features) and the
frozen representation; the predictions of neighbouring cells do not inform each other. Where neighbours share a
label (osmFISH's anatomical regions) their predictions can correct each other: ``train(smoothing="auto")``
propagates the predicted probabilities over the graph (``Z <- (1 - alpha) p + alpha P Z``, 10 steps, ``P`` the
neighbour mean; APPNP / the "smooth" step of Correct & Smooth) with ``alpha`` chosen among 0-0.9 (0: none) by the
validation log-loss of the split's models' smoothed predictions; cell types, which neighbours do not share, should
choose 0. The rest of REFINE (members, ensemble selection, refit, self-training on new slices) is unchanged.

Trained on seeds 5-9 (the labelled and test cells of ``spatial_seed_replication.md``; the tasks with a new slice
train with it in the AnnData, as the package default does) and compared with the replication's REFINE fits and
with the best baseline chosen on seeds 0-4; its runs on seeds 0-4 are paired with the benchmark's own REFINE fits
(``spatial_annotation-runs.csv``, the package default run on the same kind of machine with the same code: pass it
as ``--default-runs``). Commands:

    python benchmarks/diagnose_smoothing.py --task osmfish-region --n 100 300 1000 3000 --seeds 5 6 7 8 9 0 1 2 3 4 \\
        --out part.csv     # ... every task
    python benchmarks/diagnose_smoothing.py --report part.csv ... --default-runs benchmarks/results/spatial_annotation-runs.csv
    # -> benchmarks/results/diagnose_smoothing.{md,csv}
"""

from __future__ import annotations

from spatial_seed_replication import variant_main


def main(argv: list[str] | None = None) -> None:
    variant_main(argv, __doc__, "diagnose_smoothing", "refine_smoothing", None,
                 "REFINE's predictions smoothed over the spatial graph",
                 '`train(smoothing="auto")`: the predicted probabilities propagated over the spatial graph '
                 "(10 steps of `Z <- (1 - alpha) p + alpha P Z`), alpha of 0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8 or 0.9 "
                 "chosen by the validation log-loss of the split's models.",
                 train_options={"smoothing": "auto"}, with_query=True)


if __name__ == "__main__":
    main()
