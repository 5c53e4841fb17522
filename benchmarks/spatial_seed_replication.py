"""Five new seeds of the spatial benchmark: does the claim check replicate, free of the best-baseline selection?

``spatial_annotation.md`` compares REFINE with the best of up to 22 baseline variants per setting, the best
chosen on the same test scores it is compared on: a maximum over noisy means sits above each baseline's true
mean, so that comparison leans against REFINE. This report takes a second run of the benchmark on new seeds
(5-9: new labelled cells, same tasks, methods and package defaults) and

- picks each setting's best baseline on the committed seeds (0-4), then compares REFINE with that baseline on
  the new seeds only (paired, unbiased by the choice);
- repeats the claim check of ``spatial_annotation.py`` on the new seeds alone and on all ten.

    python benchmarks/spatial_annotation.py --seeds 5 6 7 8 9 --methods ... --out /tmp/seeds/part
    python benchmarks/spatial_seed_replication.py /tmp/seeds/part-runs.csv ...
    # -> benchmarks/results/spatial_seed_replication.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from spatial_annotation import (
    REP_KEYS,
    RESULTS,
    _pin_torch_threads,
    claim_check,
    labelled_samples,
    load_settings,
    per_task_cli,
    run_task_or_report,
    standard_error,
    train_and_predict,
    write_report,
)

from spatial_refine.annotator import RefineAnnotator


def held_out_comparison(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per task, n and representation: the best baseline on ``first``'s seeds (as ``claim_check`` picks it),
    and REFINE minus that baseline on ``second``'s seeds (mean of paired differences, standard error)."""
    chosen = claim_check(first)
    f1 = second.pivot_table(index=["task", "n", "seed"], columns="method", values="macro_f1")
    rows = []
    for r in chosen.itertuples():
        refine = f"refine[{r.rep}]"
        if (r.task, r.n) not in f1.index.droplevel(2) or refine not in f1 or r.best_baseline not in f1:
            print(f"skipped {r.task} n = {r.n} {r.rep}: {r.best_baseline} or REFINE not in the new runs")
            continue
        pair = f1.loc[(r.task, r.n), [refine, r.best_baseline]].dropna()
        diff = pair[refine] - pair[r.best_baseline]
        se = standard_error(diff)
        rows.append({"task": r.task, "n": r.n, "rep": r.rep, "baseline": r.best_baseline, "seeds": len(diff),
                     "refine": pair[refine].mean(), "baseline_f1": pair[r.best_baseline].mean(),
                     "diff": diff.mean(), "se": se, "below": bool(diff.mean() < -2 * se) if np.isfinite(se) else None})
    return pd.DataFrame(rows)


def run_refine_variant(task: str, ns: list[int], reps: list[str], seeds: list[int], rule: Callable | None,
                       label: str, train_options: dict | None = None, with_query: bool = False) -> pd.DataFrame:
    """The default REFINE with one change: to its ensemble selection, ``rule(annotator, fits, val_pos, weights)``
    returning the weights to use, ``weights`` being those of the package's selection (``None``: unchanged), and/or
    to its training options (``train_options``, given to ``train``). Same labelled and test cells as
    ``spatial_annotation.py`` for these seeds; one row per fit, method ``{label}[{rep}]``. The package is unchanged
    (the rule wraps :meth:`RefineAnnotator._ensemble_weights` while this runs)."""
    rule = rule or (lambda _annotator, _fits, _val_pos, weights: weights)
    _pin_torch_threads()
    setting = load_settings(tasks=[task])[0][0]
    original = RefineAnnotator._ensemble_weights

    def with_rule(self, fits, val_pos):
        return rule(self, fits, val_pos, original(self, fits, val_pos))

    rows = []
    RefineAnnotator._ensemble_weights = with_rule
    try:
        for n, seed, labelled in labelled_samples(setting, ns, seeds):
            for rep in reps:
                _pin_torch_threads()
                start = time.perf_counter()
                model, y_pred, y_true = train_and_predict(setting, labelled, seed, class_weight="effective",
                                                          train_options=train_options, with_query=with_query,
                                                          rep_key=REP_KEYS[rep])
                rows.append({"task": task, "n": n, "seed": seed, "method": f"{label}[{rep}]",
                             "macro_f1": f1_score(y_true, y_pred, average="macro"),
                             "accuracy": accuracy_score(y_true, y_pred),
                             "weights": str(model.metrics_.get("ensemble_weights")),
                             "smoothing": model.smoothing_,
                             "penalty": str(model.metrics_.get("penalty")),
                             "seconds": time.perf_counter() - start})
                print(rows[-1], flush=True)
    finally:
        RefineAnnotator._ensemble_weights = original
    return pd.DataFrame(rows)


def variant_report(paths: list[str], label: str, stem: str, title: str, change: str,
                   default_paths: list[str] | None = None, replication: str | Path | None = None,
                   committed: str | Path | None = None) -> None:
    """Compare the runs of :func:`run_refine_variant` (``paths``) with the replication's default REFINE fits on its
    seeds (paired) and with the best baseline chosen on seeds 0-4; the variant's runs on other seeds (0-4) are
    paired with ``default_paths``, the package's selection re-run on them (``--package-default``: the committed fits
    of seeds 0-4 ran on another machine). ``replication`` / ``committed``: the runs files of the replication and of
    the benchmark (default: the current ones in ``results/``; a report written before a change of the default
    reads them as they were then). Writes ``results/{stem}.{md,csv}``."""
    shown = label.removeprefix("refine_")
    variant = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    new = pd.read_csv(replication or RESULTS / "spatial_seed_replication-runs.csv")
    committed = pd.read_csv(committed or RESULTS / "spatial_annotation-runs.csv")
    seeds = sorted(set(variant.seed) & set(new.seed))
    other_seeds = sorted(set(variant.seed) - set(new.seed))
    new = new[new.seed.isin(seeds)]
    as_refine = variant.assign(method=variant.method.str.replace(f"{label}[", "refine[", regex=False))
    default = new[new.method.str.startswith("refine[")]
    if default_paths:
        rerun = pd.concat([pd.read_csv(p) for p in default_paths], ignore_index=True)
        rerun = rerun.assign(method=rerun.method.str.replace("refine_default[", "refine[", regex=False))
        default = pd.concat([default, rerun[~rerun.seed.isin(seeds)]], ignore_index=True)
    paired = as_refine.merge(default, on=["task", "n", "seed", "method"], suffixes=("_variant", "_default"))
    paired["diff"] = paired.macro_f1_variant - paired.macro_f1_default
    paired["rep"] = paired.method.str.extract(r"\[(.*)\]", expand=False)
    lines = [
        f"# {title} (diagnostic)", "",
        f"`python benchmarks/{stem}.py` per task, then `--report` ({platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M')}). The default REFINE with one change: {change} Seeds "
        f"{', '.join(map(str, seeds))} (`spatial_seed_replication.md`), compared with that replication's default "
        f"REFINE fits (diff = {shown} - default, paired) and with the best baseline chosen on seeds 0-4.", "",
        f"| task | n | rep | default | {shown} | diff ± SE | {shown} - chosen baseline ± SE |",
        "|---|---|---|---|---|---|---|",
    ]
    baselines = new[~new.method.str.startswith("refine")]
    held_default = held_out_comparison(committed, new).set_index(["task", "n", "rep"])
    held_variant = held_out_comparison(committed, pd.concat([baselines, as_refine[as_refine.seed.isin(seeds)]],
                                                            ignore_index=True))
    held_variant = held_variant.set_index(["task", "n", "rep"])
    on_new = paired[paired.seed.isin(seeds)]
    for (task, n, rep), part in on_new.groupby(["task", "n", "rep"], sort=False):
        d = part["diff"]
        h = held_variant.loc[(task, n, rep)]
        lines.append(f"| {task} | {n} | {rep} | {part.macro_f1_default.mean():.4f} | "
                     f"{part.macro_f1_variant.mean():.4f} | {d.mean():+.4f} ± {standard_error(d):.4f} | "
                     f"{h['diff']:+.4f} ± {h['se']:.4f}{' **below**' if h['below'] else ''} |")
    lines += ["", _paired_line(on_new, shown), ""]
    for name, held in (("default", held_default.loc[held_variant.index]), (shown, held_variant)):
        d = held["diff"]
        lines.append(f"- {name} vs the best baseline chosen on seeds 0-4: {d.mean():+.4f} on average, level or ahead "
                     f"in {(d >= -0.002).sum()} of {len(d)}, below by more than two paired SE in "
                     f"{int(held.below.sum())}.")
    on_other = paired[paired.seed.isin(other_seeds)]
    if len(on_other):
        lines += ["", f"## Seeds {', '.join(map(str, other_seeds))}: paired with the package default's fits of these "
                  f"seeds on this machine ({', '.join(f'`{Path(p).name}`' for p in default_paths)})", "",
                  f"| task | n | rep | default | {shown} | diff ± SE |", "|---|---|---|---|---|---|"]
        for (task, n, rep), part in on_other.groupby(["task", "n", "rep"], sort=False):
            lines.append(f"| {task} | {n} | {rep} | {part.macro_f1_default.mean():.4f} | "
                         f"{part.macro_f1_variant.mean():.4f} | {part['diff'].mean():+.4f} ± {standard_error(part['diff']):.4f} |")
        lines += ["", _paired_line(on_other, shown)]
    variant.to_csv(RESULTS / f"{stem}.csv", index=False)
    if default_paths and all(Path(p).resolve().parent != RESULTS.resolve() for p in default_paths):  # not yet kept
        rerun.assign(method=rerun.method.str.replace("refine[", "refine_default[", regex=False)).to_csv(
            RESULTS / f"{stem}-package_default.csv", index=False)
    write_report(RESULTS / f"{stem}.md", lines)


def _paired_line(paired: pd.DataFrame, shown: str) -> str:
    by_setting = paired.groupby(["task", "n", "rep"])["diff"].mean()
    return (f"Over {len(by_setting)} settings: {shown} - default {by_setting.mean():+.4f} on average (higher by more "
            f"than 0.002 in {(by_setting > 0.002).sum()}, lower in {(by_setting < -0.002).sum()}).")


def variant_main(argv: list[str] | None, doc: str, stem: str, label: str, rule: Callable | None, title: str,
                 change: str, train_options: dict | None = None, reference_options: dict | None = None,
                 with_query: bool = False) -> None:
    """Command line of a one-change diagnostic (see :func:`run_refine_variant`): ``--task/--n/--seeds --out`` runs
    the variant (with ``--package-default``: the package's default unchanged, or with ``reference_options`` given to
    ``train``, to pair with on seeds that have no replication fits), ``--report RUNS [--default-runs RUNS]
    [--replication-runs CSV] [--committed-runs CSV]`` writes the report."""
    parser = per_task_cli(doc, ["encoder", "pca"])
    parser.add_argument("--package-default", action="store_true",
                        help="run the package's selection unchanged (method refine_default[rep])")
    parser.add_argument("--default-runs", nargs="+", default=None,
                        help="--package-default runs to pair the variant's runs of seeds 0-4 with")
    parser.add_argument("--replication-runs", default=None,
                        help="the replication's runs file to compare with (default: the current one in results/)")
    parser.add_argument("--committed-runs", default=None,
                        help="the benchmark's runs file to compare with (default: the current one in results/)")
    args = parser.parse_args(argv)

    def run(a):
        if a.package_default:
            return run_refine_variant(a.task, a.n, a.rep, a.seeds, None, "refine_default", reference_options)
        return run_refine_variant(a.task, a.n, a.rep, a.seeds, rule, label, train_options, with_query)

    run_task_or_report(parser, args, stem, run,
                       lambda paths: variant_report(paths, label, stem, title, change, args.default_runs,
                                                    args.replication_runs, args.committed_runs))


def _claim_line(name: str, claims: pd.DataFrame) -> str:
    gap = claims.diff_to_best_baseline
    below = claims[claims.below_best_by_more_than_noise.astype(bool)]
    where = "; ".join(f"{r.task} n = {r.n} {r.rep}: {r.diff_to_best_baseline:+.4f} ± {r.diff_to_best_se:.4f} vs "
                      f"{r.best_baseline}" for r in below.itertuples())
    return (f"- {name}: below the better of GNN and probe by more than two SE in "
            f"{int(claims.below_by_more_than_noise.sum())} of {len(claims)}; against the best of every baseline "
            f"level (within 0.002) or ahead in {(gap >= -0.002).sum()}, ahead by more than 0.002 in "
            f"{(gap > 0.002).sum()}, mean {gap.mean():+.4f}, below by more than two paired SE in {len(below)}"
            + (f" ({where})" if where else "") + ".")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="-runs.csv files of the new seeds")
    parser.add_argument("--committed", default=str(RESULTS / "spatial_annotation-runs.csv"))
    args = parser.parse_args(argv)
    committed = pd.read_csv(args.committed)
    new = pd.concat([pd.read_csv(p) for p in args.runs], ignore_index=True)
    overlap = set(new.seed) & set(committed.seed)
    if overlap:
        raise SystemExit(f"the new runs reuse committed seeds {sorted(overlap)}: pass runs of other seeds")
    held = held_out_comparison(committed, new)
    methods = set(new.method)
    both = pd.concat([committed[committed.method.isin(methods)], new], ignore_index=True)
    lines = [
        "# Spatial benchmark on five new seeds: replication without the best-baseline selection", "",
        f"Report of {time.strftime('%Y-%m-%d %H:%M')}: `python benchmarks/spatial_seed_replication.py` on "
        f"{len(new):,} new fits (seeds {', '.join(map(str, sorted(set(new.seed))))}; `spatial_seed_replication-runs.csv`) "
        "next to the committed ones (`spatial_annotation-runs.csv`, seeds 0-4). Same tasks, label budgets, methods "
        "(every default baseline in its three weightings and REFINE) and package defaults; new labelled cells.", "",
        "## REFINE vs the best baseline chosen on seeds 0-4, scored on the new seeds", "",
        "The baseline is the one `spatial_annotation.md` names as best (highest mean on seeds 0-4); the difference "
        "is measured on the new seeds only, so the choice does not favour it. Paired mean ± standard error; "
        "**below** = lower by more than two standard errors.", "",
        "| task | n | rep | baseline (chosen on seeds 0-4) | REFINE | baseline | diff ± SE | below? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in held.itertuples():
        below = {True: "**below**", False: "no", None: "-"}[r.below]
        lines.append(f"| {r.task} | {r.n} | {r.rep} | {r.baseline} | {r.refine:.3f} | {r.baseline_f1:.3f} | "
                     f"{r.diff:+.4f} ± {r.se:.4f} | {below} |")
    d = held["diff"]
    lines += ["", f"Over {len(held)} settings: REFINE minus the chosen baseline {d.mean():+.4f} on average; level "
              f"(within 0.002) or ahead in {(d >= -0.002).sum()}, ahead by more than 0.002 in {(d > 0.002).sum()}, "
              f"below by more than two paired SE in {int(held.below.sum())}.", "",
              "## The claim check of `spatial_annotation.py` (best baseline chosen on the scores compared)", "",
              _claim_line("New seeds alone", claim_check(new)),
              _claim_line("All ten seeds", claim_check(both)), ""]
    skipped = len(claim_check(committed)) - len(held)
    if skipped:
        lines.insert(lines.index("## The claim check of `spatial_annotation.py` (best baseline chosen on the scores "
                                 "compared)") - 1, f"{skipped} settings skipped: their chosen baseline or REFINE "
                                 "did not run on the new seeds.\n")
    held.to_csv(RESULTS / "spatial_seed_replication.csv", index=False)
    runs_path = RESULTS / "spatial_seed_replication-runs.csv"
    if all(Path(p).resolve() != runs_path.resolve() for p in args.runs):  # regenerating from it: leave it as is
        new.to_csv(runs_path, index=False)
    write_report(RESULTS / "spatial_seed_replication.md", lines, reading="\n## Reading")


if __name__ == "__main__":
    main()
