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

``--baselines TASK``: does a graph baseline gain as much? ``neighbor_logreg`` and ``gnn`` in their three weightings
(as in the benchmark, reference only) with the same choice of smoothing (``SMOOTHING_AUTO_STRATEGIES`` extended to
them for the run), seeds 5-9, paired with the replication's unsmoothed fits of the same baseline ->
``results/diagnose_smoothing_baselines-TASK.{md,csv}``.
"""

from __future__ import annotations

import platform
import sys
import time

import pandas as pd
from sklearn.metrics import f1_score
from spatial_annotation import (
    RESULTS,
    class_weight_of,
    labelled_samples,
    load_settings,
    standard_error,
    train_and_predict,
)
from spatial_seed_replication import variant_main

from spatial_refine import annotator

BASELINES = ("neighbor_logreg", "neighbor_logreg_bal", "neighbor_logreg_eff", "gnn", "gnn_bal", "gnn_eff")


def baselines(task: str, seeds: list[int]) -> None:
    """The graph baselines with ``smoothing="auto"``, against the replication's unsmoothed fits (see above)."""
    annotator.SMOOTHING_AUTO_STRATEGIES = ("refine", "neighbor_logreg", "gnn")
    start, rows = time.perf_counter(), []
    setting = load_settings(tasks=[task])[0][0]
    for n, seed, labelled in labelled_samples(setting, [100, 300, 1000, 3000], seeds):
        for method in BASELINES:
            model, y_pred, y_true = train_and_predict(
                setting, labelled, seed, class_weight=class_weight_of(method), train_options={"smoothing": "auto"},
                strategy=method.removesuffix("_bal").removesuffix("_eff"))
            rows.append({"task": task, "n": n, "seed": seed, "method": method, "smoothing": model.smoothing_,
                         "smoothed": f1_score(y_true, y_pred, average="macro")})
            print(rows[-1], flush=True)
    runs = pd.DataFrame(rows)
    plain = pd.read_csv(RESULTS / "spatial_seed_replication-runs.csv")[["task", "n", "seed", "method", "macro_f1"]]
    runs = runs.merge(plain.rename(columns={"macro_f1": "plain"}), on=["task", "n", "seed", "method"])
    stem = f"diagnose_smoothing_baselines-{task}"
    runs.to_csv(RESULTS / f"{stem}.csv", index=False)
    runs["diff"] = runs.smoothed - runs.plain
    lines = [f"# Do the graph baselines gain from smoothing too? {task} (diagnostic)", "",
             f"`python benchmarks/diagnose_smoothing.py --baselines {task}` ({platform.machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - start:.0f} s). Each baseline through the "
             "package with `train(smoothing=\"auto\")` (alpha chosen on its own validation split, as REFINE's), "
             f"seeds {', '.join(map(str, seeds))}, paired with its unsmoothed fits in "
             "`spatial_seed_replication-runs.csv` (same labelled and test cells); test macro-F1.", "",
             "| n | method | alphas chosen | plain | smoothed | diff ± SE |", "|---|---|---|---|---|---|"]
    for (n, method), group in runs.groupby(["n", "method"], sort=False):
        alphas = " ".join(f"{a:g}" for a in group.smoothing)
        lines.append(f"| {n} | {method} | {alphas} | {group.plain.mean():.4f} | {group.smoothed.mean():.4f} | "
                     f"{group['diff'].mean():+.4f} ± {standard_error(group['diff']):.4f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--baselines" in argv:
        baselines(argv[argv.index("--baselines") + 1], [5, 6, 7, 8, 9])
        return
    variant_main(argv, __doc__, "diagnose_smoothing", "refine_smoothing", None,
                 "REFINE's predictions smoothed over the spatial graph",
                 '`train(smoothing="auto")`: the predicted probabilities propagated over the spatial graph '
                 "(10 steps of `Z <- (1 - alpha) p + alpha P Z`), alpha of 0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8 or 0.9 "
                 "chosen by the validation log-loss of the split's models.",
                 train_options={"smoothing": "auto"}, with_query=True)


if __name__ == "__main__":
    main()
