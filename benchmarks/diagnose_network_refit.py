"""REFINE's network refitted on every labelled cell once early stopping has chosen its epochs?

Until 2026-12-03 REFINE refitted its logistic regressions on all labelled cells once their depth was chosen, but
its network kept the model early-stopped on the training split: 80% of the labels (``validation_fraction=0.2``),
60-90 cells at n = 100. AutoGluon's ``refit_full`` trains such a model again on all the data for the epochs early
stopping chose. ``train(refit=True)`` (now the default) does that: each cross-fitted network part is trained again
on every labelled cell, from the start its split run kept (the linear probe or REFINE's residual path, itself
trained again for its own epochs), for the epochs that run kept; the ensemble weights stay those chosen on the
split. The reference is ``train(refit="linear")``, the default before.

It trains REFINE with ``refit=True`` on seeds 5-9 (same labelled and test cells as ``spatial_seed_replication.md``)
and compares, on those seeds, with the replication's REFINE fits and with the best baseline chosen on seeds 0-4;
its runs on seeds 0-4 are paired with ``refit="linear"`` re-run on the same machine (``--package-default``; the
committed fits of those seeds ran on another one; ``diagnose_weighted_selection-package_default.csv`` holds such
re-runs). The committed report (2026-12-03) compared with the replication and benchmark runs as they were before
the change (git commit 2105a27); the current files hold fits with ``refit=True``. To regenerate it:

    python benchmarks/diagnose_network_refit.py --task osmfish-cluster --n 100 300 1000 3000 --seeds 5 6 7 8 9 --out part.csv
    python benchmarks/diagnose_network_refit.py --task osmfish-cluster --n 100 300 1000 3000 --seeds 0 1 2 3 4 --out part0.csv
    python benchmarks/diagnose_network_refit.py --task osmfish-cluster --n ... --seeds 0 1 2 3 4 --package-default --out d0.csv
    git show 2105a27:benchmarks/results/spatial_seed_replication-runs.csv > replication-before.csv
    git show 2105a27:benchmarks/results/spatial_annotation-runs.csv > committed-before.csv
    python benchmarks/diagnose_network_refit.py --report part.csv part0.csv ... --default-runs d0.csv ... \\
        --replication-runs replication-before.csv --committed-runs committed-before.csv
    # -> benchmarks/results/diagnose_network_refit.{md,csv}
"""

from __future__ import annotations

from spatial_seed_replication import variant_main


def main(argv: list[str] | None = None) -> None:
    variant_main(argv, __doc__, "diagnose_network_refit", "refine_refit", None,
                 "REFINE's network refitted on every labelled cell",
                 "`train(refit=True)`: the kept network parts are trained again on every labelled cell for the epochs "
                 "their early-stopped split runs kept (the ensemble weights stay those chosen on the split), instead "
                 "of keeping the models trained on 80% of the labels (`refit=\"linear\"`, the default before "
                 "2026-12-03, which refits the logistic regressions only).",
                 train_options={"refit": True}, reference_options={"refit": "linear"})


if __name__ == "__main__":
    main()
