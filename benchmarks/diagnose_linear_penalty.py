"""REFINE's linear members choosing their L2 penalty by the cross-validated macro-F1?

REFINE's linear head and its limits on either block (the logistic regression on the hop features alone, whose depth
0 is the logistic regression on expression, and on the frozen representation alone) were fitted with
scikit-learn's default penalty, ``C = 1``, on standardised columns. With ``spatial_refine.annotator.LINEAR_CS`` set
to (0.01, 0.03, 0.1, 0.3, 1) each of them, once its depth and representation scale are chosen (5-fold
cross-validation, log-loss), keeps the ``C`` whose out-of-fold predictions have the highest macro-F1 and is refitted
at it, its logits multiplied by the factor that minimises the out-of-fold log-loss at that ``C`` (temperature
scaling, ``LINEAR_TEMPERATURE``; without it the penalised members were under-confident, ensemble selection on the
log-loss weighed them down and REFINE fell, see the ablations below); the rest of REFINE (network, ensemble
selection on the log-loss, refit, self-training, smoothing) is unchanged. Macro-F1 and not the log-loss: on the
logistic regression on expression alone (``diagnose_logreg_penalty.md``: 10 seeds, 100-1,000 labels, four tasks)
the cross-validated log-loss kept ``C = 1`` in half the settings (median pick), while ``C = 0.1`` had a higher test
macro-F1 than ``C = 1`` in all 12 (a stronger penalty: less sure probabilities, rare classes ranked better).

It trains REFINE so on seeds 5-9 (same labelled and test cells as ``spatial_seed_replication.md``) and compares, on
those seeds, with the replication's REFINE fits and with the best baseline chosen on seeds 0-4; its runs on seeds
0-4 are paired with the benchmark's own REFINE fits (``spatial_annotation-runs.csv``: the package default before
this change, run on the same kind of machine with the same code). ``--package-default`` runs REFINE with
``LINEAR_CS = (1.0,)`` (the default before). Commands:

    python benchmarks/diagnose_linear_penalty.py --task osmfish-cluster --n 100 300 1000 3000 --seeds 5 6 7 8 9 \\
        --out part.csv     # ... every task and seed set
    python benchmarks/diagnose_linear_penalty.py --report part.csv ... \\
        --default-runs benchmarks/results/spatial_annotation-runs.csv
    # -> benchmarks/results/diagnose_linear_penalty.{md,csv}

Ablations, seeds 5-9, against the replication's default REFINE fits: ``--temperature-only`` (``C = 1``, the logits'
factor fitted: label ``refine_temperature_only``) and ``--no-temperature`` (``C`` chosen, logits unscaled:
``refine_penalty_only``) with ``--task/--n/--seeds 5 6 7 8 9 --out``, then
``--ablation-report PARTS ...`` -> ``benchmarks/results/diagnose_linear_penalty_ablations.{md,csv}``.
"""

from __future__ import annotations

import platform
import sys
import time

import pandas as pd
from spatial_annotation import RESULTS, standard_error
from spatial_seed_replication import variant_main

from spatial_refine import annotator

PENALTIES = (0.01, 0.03, 0.1, 0.3, 1.0)
ABLATIONS = {"refine_temperature_only": "C = 1, the logits' factor fitted (`--temperature-only`)",
             "refine_penalty_only": "C chosen, the logits unscaled (`--no-temperature`)"}


def ablation_report(paths: list[str]) -> None:
    """Each ablation's fits (``paths``) paired with the replication's default REFINE fits of the same seeds."""
    runs = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    parts = runs.method.str.extract(r"(.*)\[(.*)\]")
    runs["label"], runs["rep"] = parts[0], parts[1]
    default = pd.read_csv(RESULTS / "spatial_seed_replication-runs.csv")
    default = default[default.method.str.match(r"refine\[")].copy()
    default["rep"] = default.method.str.extract(r"\[(.*)\]")[0]
    paired = runs.merge(default[["task", "n", "seed", "rep", "macro_f1"]], on=["task", "n", "seed", "rep"],
                        suffixes=("", "_default"))
    paired["diff"] = paired.macro_f1 - paired.macro_f1_default
    paired.to_csv(RESULTS / "diagnose_linear_penalty_ablations.csv", index=False)
    lines = ["# REFINE's linear members: the penalty's choice and the temperature apart (diagnostic ablations)", "",
             f"`python benchmarks/diagnose_linear_penalty.py --ablation-report ...` ({platform.machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}). Each ablation keeps one of the two parts of "
             "`diagnose_linear_penalty.md`; test macro-F1 paired with the replication's default REFINE fits "
             "(the package before both), seeds " + ", ".join(map(str, sorted(set(paired.seed)))) + ".", ""]
    for label, what in ABLATIONS.items():
        part = paired[paired.label == label]
        if part.empty:
            continue
        lines += [f"## {label}: {what}", "", "| task | n | rep | default | ablation | diff ± SE |",
                  "|---|---|---|---|---|---|"]
        for (task, n, rep), group in part.groupby(["task", "n", "rep"]):
            lines.append(f"| {task} | {n} | {rep} | {group.macro_f1_default.mean():.4f} | {group.macro_f1.mean():.4f} "
                         f"| {group['diff'].mean():+.4f} ± {standard_error(group['diff']):.4f} |")
        means = part.groupby(["task", "n", "rep"])["diff"].mean()
        lines += ["", f"Over {len(means)} settings: {means.mean():+.4f} on average (higher by more than 0.002 in "
                  f"{(means > 0.002).sum()}, lower by more than 0.002 in {(means < -0.002).sum()}).", ""]
    path = RESULTS / "diagnose_linear_penalty_ablations.md"
    path.write_text("\n".join(lines))
    print(path.read_text())


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--ablation-report":
        return ablation_report(argv[1:])
    package_default = "--package-default" in argv
    temperature_only = "--temperature-only" in argv  # C = 1, the logits' factor fitted
    penalty_only = "--no-temperature" in argv  # C chosen, the logits unscaled
    argv = [a for a in argv if a not in ("--temperature-only", "--no-temperature")]
    annotator.LINEAR_CS = (1.0,) if package_default or temperature_only else PENALTIES
    annotator.LINEAR_TEMPERATURE = not (package_default or penalty_only)
    label = ("refine_temperature_only" if temperature_only else "refine_penalty_only" if penalty_only
             else "refine_linear_penalty")
    variant_main(argv, __doc__, "diagnose_linear_penalty", label, None,
                 "REFINE's linear members choosing their penalty",
                 f"`LINEAR_CS = {PENALTIES}`: REFINE's linear head and its one-block limits choose, by 5-fold "
                 "cross-validation after the depth and the representation's scale, the inverse L2 penalty C of "
                 "highest out-of-fold macro-F1, refitted at it, its logits times the factor of lowest out-of-fold "
                 "log-loss at that C (temperature scaling, `LINEAR_TEMPERATURE`).", with_query=True)


if __name__ == "__main__":
    main()
