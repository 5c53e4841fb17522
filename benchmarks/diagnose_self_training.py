"""Self-training on the unlabelled cells: does it lift REFINE on the spatial benchmark, and where?

REFINE trains on the labelled reference cells only; the cells it is asked about (the reference's other cells, or
a new slice) are there, unlabelled, and may differ from the labelled ones (a new slice: another section, another
batch; ``diagnose_slice_shift.md``). Self-training (``train(self_training=f)``) lets the models learn from them:
once the split has made every choice on the true labels, the split's ensemble predicts the unlabelled cells, each
predicted class's most confident half takes its prediction as a pseudo-label, and the refit trains every kept
model on the labelled and the pseudo-labelled cells. For the tasks with a new slice (seqFISH, MERFISH) the slice is
put in the training AnnData, unlabelled, beside the reference (one graph per slice; ``with_query_slice``), as
scANVI's users do; osmFISH (one slice) pseudo-labels the reference's unlabelled cells.

Variants (``--variant``), each trained on seeds 5-9 (the labelled and test cells of ``spatial_seed_replication.md``)
and compared on those seeds with the replication's REFINE fits (reference only, no self-training) and with the
best baseline chosen on seeds 0-4:

- ``all`` (``refine_self_training``): ``self_training=0.5``, every unlabelled cell a candidate (the reference's
  too) -> ``results/diagnose_self_training.md``;
- ``joint-only`` (``refine_joint_only``): the new slice in the AnnData, no self-training (``self_training=None``):
  what putting the slice there does alone (the inputs' standardisation then sees its cells) ->
  ``results/diagnose_self_training_joint_only.md``.

``--baselines``: does a baseline gain as much? The logistic regression on expression (``logreg``, class-balanced
and effective-number weights, through the package) trained on the reference alone (the benchmark's rows) and with
``self_training=0.5`` on the new slice's AnnData, seeds 5-9, the tasks with a new slice ->
``results/diagnose_self_training_baselines.md``.

The package default that came of it, ``self_training="auto"`` (the new slices' cells only), is measured by the
benchmark itself (``spatial_annotation.py``, whose REFINE trains with the new slice in the AnnData). Commands:

    python benchmarks/diagnose_self_training.py --variant all --task merfish-cellclass --n 100 300 1000 3000 \\
        --seeds 5 6 7 8 9 --out part.csv     # ... every task
    python benchmarks/diagnose_self_training.py --variant all --report part.csv ...
"""

from __future__ import annotations

import platform
import sys
import time

import pandas as pd
from sklearn.metrics import f1_score
from spatial_annotation import RESULTS, labelled_samples, load_settings, standard_error, train_and_predict
from spatial_seed_replication import variant_main

FRACTION = 0.5
VARIANTS = {
    "all": ("refine_self_training", "diagnose_self_training", "REFINE with self-training on every unlabelled cell",
            f"`train(self_training={FRACTION})`: the {FRACTION:.0%} most confident unlabelled cells of each predicted "
            "class (the reference's and the new slice's) pseudo-labelled for the refit; a new slice is in the "
            "training AnnData, unlabelled.", {"self_training": FRACTION}),
    "joint-only": ("refine_joint_only", "diagnose_self_training_joint_only",
                   "REFINE with the new slice in the training AnnData, without self-training",
                   "the new slice in the training AnnData, unlabelled (one graph per slice); `self_training=None`.",
                   {"self_training": None}),
}


def baselines(seeds: list[int]) -> None:
    """The logistic regression on expression with and without self-training on the new slice (see above)."""
    start, rows = time.perf_counter(), []
    for setting in load_settings(tasks=["seqfish-celltype", "merfish-cellclass"])[0]:
        for n, seed, labelled in labelled_samples(setting, [100, 300, 1000, 3000], seeds):
            for weight in ("balanced", "effective"):
                row = {"task": setting.name, "n": n, "seed": seed, "class_weight": weight}
                for name, options, with_query in (("plain", {}, False), ("self_training", {"self_training": FRACTION},
                                                                          True)):
                    _, y_pred, y_true = train_and_predict(setting, labelled, seed, class_weight=weight,
                                                          train_options=options, with_query=with_query,
                                                          strategy="logreg")
                    row[name] = f1_score(y_true, y_pred, average="macro")
                rows.append(row)
                print(row, flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(RESULTS / "diagnose_self_training_baselines.csv", index=False)
    runs["diff"] = runs.self_training - runs.plain
    lines = ["# Does the logistic regression on expression gain from self-training too? (diagnostic)", "",
             f"`python benchmarks/diagnose_self_training.py --baselines` ({platform.machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - start:.0f} s). `logreg` through the package "
             "trained on the reference alone (as in the benchmark) and with `self_training=0.5` with the new slice "
             "in the training AnnData (every unlabelled cell a candidate), seeds "
             f"{', '.join(map(str, seeds))}; test macro-F1 on the new slice; diff paired.", "",
             "| task | n | class_weight | plain | self-training | diff ± SE |", "|---|---|---|---|---|---|"]
    for (task, n, weight), group in runs.groupby(["task", "n", "class_weight"], sort=False):
        lines.append(f"| {task} | {n} | {weight} | {group.plain.mean():.4f} | {group.self_training.mean():.4f} | "
                     f"{group['diff'].mean():+.4f} ± {standard_error(group['diff']):.4f} |")
    for weight, group in runs.groupby("class_weight"):
        by_setting = group.groupby(["task", "n"])["diff"].mean()
        lines.append(f"\n{weight}: {by_setting.mean():+.4f} on average over {len(by_setting)} settings (higher by "
                     f"more than 0.002 in {(by_setting > 0.002).sum()}, lower in {(by_setting < -0.002).sum()}).")
    (RESULTS / "diagnose_self_training_baselines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--baselines" in argv:
        baselines([5, 6, 7, 8, 9])
        return
    variant = "all"
    if "--variant" in argv:
        at = argv.index("--variant")
        variant = argv[at + 1]
        del argv[at : at + 2]
    label, stem, title, change, options = VARIANTS[variant]
    variant_main(argv, __doc__, stem, label, None, title, change, train_options=options, with_query=True)


if __name__ == "__main__":
    main()
