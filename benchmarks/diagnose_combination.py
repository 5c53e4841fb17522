"""How should REFINE's fitted models be combined? A diagnostic that stores every candidate's probabilities.

For each labelled subset of ``spatial_annotation.py`` (same tasks, sampling and seeds; both frozen
representations) it trains the SIGN network member (``hidden=64``) and logistic regressions on the linear
residual's input with the standardised frozen block scaled by ``s`` (its L2 penalty times ``1/s^2``; ``s = 0``
drops it: the residual from scratch) and on the frozen block alone (the linear probe), each split-fitted (for
validation probabilities) and refitted on all labelled cells (for test probabilities). ``--report`` then scores
combination rules offline, with no refitting: the mean of the network and the linear residual (the default
before ensemble selection), weights or penalties picked on validation, and greedy ensemble selection
(:func:`spatial_refine.refine.greedy_ensemble_weights`) over several candidate pools, against the best
baseline of ``spatial_annotation-runs.csv``. ``--add-crossfit`` adds the network cross-fitted on two halves of
the validation cells (as the package now fits it for ensemble selection) and scores selection with it.

    python benchmarks/diagnose_combination.py --settings osmfish-cluster:300 osmfish-cluster:1000 --out /tmp/diag
    python benchmarks/diagnose_combination.py --add-depths --out /tmp/diag   # optional: every depth a candidate
    python benchmarks/diagnose_combination.py --add-crossfit --out /tmp/diag  # optional: cross-fitted network
    python benchmarks/diagnose_combination.py --report /tmp/diag
    # -> benchmarks/results/diagnose_combination.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diagnose_rep_penalty import _RepScaledLinear, label_subset
from sklearn.metrics import f1_score
from spatial_annotation import REP_KEYS, RESULTS, load_settings

from spatial_refine.annotator import RefineAnnotator
from spatial_refine.refine import greedy_ensemble_weights
from spatial_refine.refine.ensemble import log_loss

#: the loss weighting the committed results were measured with (the default before 2026-12-02); the
#: package default is now class_weight="effective"
UNWEIGHTED = None

SCALES = (1.0, 0.5, 0.25, 0.1, 0.0)
#: candidate pools for ensemble selection; "small" is the package default of ``hidden="auto"``
POOLS = {
    "small": ("net", "lin1", "lin0", "probe"),
    "with penalties": ("net", "probe", "lin1", "lin0.5", "lin0.25", "lin0.1", "lin0"),
    "without probe": ("net", "lin1", "lin0.5", "lin0.25", "lin0.1", "lin0"),
}


class _ProbeLinear(_RepScaledLinear):
    """The logistic regression on the frozen block alone (the package's ``linear[rep]`` member)."""

    def _train_sklearn(self, inputs, train_pos, depth, random_state, class_weight=None, kind="all"):
        return RefineAnnotator._train_sklearn(self, inputs, train_pos, depth, random_state, class_weight, kind="rep")


class _HopsLinear(_RepScaledLinear):
    """The logistic regression on the hop features alone (the package's ``linear[hops]`` member)."""

    def _train_sklearn(self, inputs, train_pos, depth, random_state, class_weight=None, kind="all"):
        return RefineAnnotator._train_sklearn(self, inputs, train_pos, depth, random_state, class_weight, kind="hops")


def _store_probas(arrays: dict, model: RefineAnnotator, setting, test: np.ndarray | None, prefix: str, *,
                  val: bool) -> None:
    """Add ``model``'s probabilities on the validation cells (``val``) or on the test cells to ``arrays``."""
    ref = model.predict(setting.reference)
    if val:
        arrays[f"{prefix}_val"] = ref.iloc[model.validation_indices_].to_numpy()
    else:
        arrays[f"{prefix}_test"] = (model.predict(setting.query) if test is None else ref.iloc[test]).to_numpy()


def add_depths(setting, n: int, rep: str, seed: int, out: Path) -> None:
    """Add the linear residual and its hop-only limit at every fixed depth 0-3 (``lin1_d{d}``, ``lin0_d{d}``) to
    a stored fit: candidates for an ensemble library that does not choose the depth first."""
    path = out / f"{setting.name}_{n}_{rep}_{seed}.npz"
    arrays = dict(np.load(path))
    if "lin0_d3_test" in arrays:
        return
    test, _ = label_subset(setting, n, seed)
    _RepScaledLinear.rep_scale = 1.0
    for prefix, cls in (("lin1", _RepScaledLinear), ("lin0", _HopsLinear)):
        for depth in range(4):
            for refit in (False, True):
                model = cls(setting.reference, "_train_labels", rep_key=REP_KEYS[rep], hidden=None, n_layers=depth)
                model.train(class_weight=UNWEIGHTED, random_state=seed, refit=refit)
                _store_probas(arrays, model, setting, test, f"{prefix}_d{depth}", val=not refit)
    del setting.reference.obs["_train_labels"]
    np.savez_compressed(path, **arrays)
    print(f"{path.name}: depths added", flush=True)


def add_crossfit(setting, n: int, rep: str, seed: int, out: Path) -> None:
    """Add cross-fitted network probabilities to a stored fit: the validation cells of the package's split are
    halved; the network (``hidden=64``, depth, start and early stopping all chosen on one half) predicts the
    other half, and the two networks' mean predicts the test cells (``netcf_val`` / ``netcf_test``). Its
    validation probabilities have seen no selection on the cells they score, unlike ``net_val`` (early-stopped
    on those very cells)."""
    import spatial_refine.annotator as annotator_module

    path = out / f"{setting.name}_{n}_{rep}_{seed}.npz"
    arrays = dict(np.load(path))
    if "netcf_test" in arrays:
        return
    start = time.perf_counter()
    reference = setting.reference
    test, _ = label_subset(setting, n, seed)
    probe = RefineAnnotator(reference, "_train_labels", rep_key=REP_KEYS[rep], hidden=64)
    index = np.arange(len(probe.labelled_))
    train_pos, val_pos = annotator_module._stratified_split(index, probe.codes_, 0.2, seed)
    val_pos = np.sort(val_pos)
    val_cells = probe.labelled_[val_pos]  # the stored order of the validation cells
    halves = tuple(val_pos[half] for half in annotator_module._halves(val_pos, seed))  # as the package halves them
    original = annotator_module._stratified_split
    val_proba, test_proba = np.zeros_like(arrays["net_val"]), 0.0
    try:
        for stop, scored in (halves, halves[::-1]):
            annotator_module._stratified_split = lambda *a, stop=stop, **k: (train_pos, stop)
            model = RefineAnnotator(reference, "_train_labels", rep_key=REP_KEYS[rep], hidden=64).train(class_weight=UNWEIGHTED, random_state=seed)
            ref = model.predict(reference).to_numpy()
            rows = np.searchsorted(val_cells, probe.labelled_[scored])
            val_proba[rows] = ref[probe.labelled_[scored]]
            test_proba = test_proba + 0.5 * (model.predict(setting.query).to_numpy() if test is None else ref[test])
    finally:
        annotator_module._stratified_split = original
        del reference.obs["_train_labels"]
    arrays["netcf_val"], arrays["netcf_test"] = val_proba, test_proba
    np.savez_compressed(path, **arrays)
    print(f"{path.name} cross-fit: {time.perf_counter() - start:.0f} s", flush=True)


def fit_setting(setting, n: int, rep: str, seed: int, out: Path) -> None:
    path = out / f"{setting.name}_{n}_{rep}_{seed}.npz"
    if path.exists():
        return
    reference = setting.reference
    test, y_test = label_subset(setting, n, seed)
    start = time.perf_counter()
    network = RefineAnnotator(reference, "_train_labels", rep_key=REP_KEYS[rep], hidden=64).train(class_weight=UNWEIGHTED, random_state=seed)
    arrays: dict[str, np.ndarray] = {}
    _store_probas(arrays, network, setting, test, "net", val=True)
    _store_probas(arrays, network, setting, test, "net", val=False)
    classes = np.asarray(network.classes_, dtype=str)
    truth = reference.obs[setting.labels_key].astype(str).to_numpy()
    arrays["classes"], arrays["y_test"] = classes, np.asarray(y_test, dtype=str)
    arrays["y_val"] = np.searchsorted(classes, truth[network.validation_indices_])  # classes_ are sorted
    for prefix, cls, options in [*((f"lin{s:g}", _RepScaledLinear, s) for s in SCALES), ("probe", _ProbeLinear, 1.0)]:
        cls.rep_scale = options
        for refit in (False, True):
            kwargs = {"n_layers": 0} if prefix == "probe" else {}
            model = cls(reference, "_train_labels", rep_key=REP_KEYS[rep], hidden=None, **kwargs)
            _store_probas(arrays, model.train(class_weight=UNWEIGHTED, random_state=seed, refit=refit), setting, test, prefix, val=not refit)
    del reference.obs["_train_labels"]
    np.savez_compressed(path, **arrays)
    print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)


def score_rules(path: Path) -> dict:
    """Test macro-F1 of every combination rule for one stored fit."""
    d = np.load(path)
    task, n, rep, seed = path.stem.split("_")
    classes, y_test, y_val = d["classes"], d["y_test"], d["y_val"]

    def f1(proba: np.ndarray) -> float:
        return f1_score(y_test, classes[proba.argmax(1)], average="macro")

    val, test = (lambda k: d[f"{k}_val"]), (lambda k: d[f"{k}_test"])
    row = {"task": task, "n": int(n), "rep": rep, "seed": int(seed)}
    for k in ("net", "lin1", "lin0", "probe"):
        row[k] = f1(test(k))
    row["mean of network and linear"] = f1(test("net") + test("lin1"))
    grid = (0, 0.25, 0.5, 0.75, 1)
    w = min(grid, key=lambda w: log_loss(w * val("lin1") + (1 - w) * val("net"), y_val))
    row["weight picked on validation"] = f1(w * test("lin1") + (1 - w) * test("net"))
    s = min(SCALES, key=lambda s: log_loss((val("net") + val(f"lin{s:g}")) / 2, y_val))
    row["mean, frozen-block penalty picked on validation"] = f1(test("net") + test(f"lin{s:g}"))
    row["mean of network, linear and linear from scratch"] = f1(test("net") + test("lin1") + test("lin0"))
    for name, pool in POOLS.items():
        weights = greedy_ensemble_weights([val(k) for k in pool], y_val, rounds=10)
        row[f"ensemble selection, {name}"] = f1(sum(wk * test(k) for wk, k in zip(weights, pool, strict=True)))
        if name == "small":
            row["weights"] = " ".join(f"{k}:{wk:g}" for k, wk in zip(pool, weights, strict=True) if wk > 0)
    if "netcf_val" in d:  # stored by --add-crossfit: the network's validation probabilities saw no selection
        pool = ("netcf", "lin1", "lin0", "probe")
        weights = greedy_ensemble_weights([val(k) for k in pool], y_val, rounds=10)
        row["netcf"] = f1(test("netcf"))
        row["ensemble selection, cross-fitted network"] = f1(sum(wk * test(k) for wk, k in zip(weights, pool, strict=True)))
        row["ensemble selection, cross-fitted weights, one network"] = f1(
            sum(wk * test(k) for wk, k in zip(weights, ("net", *pool[1:]), strict=True)))
        row["weights cross-fitted"] = " ".join(f"{k}:{wk:g}" for k, wk in zip(pool, weights, strict=True) if wk > 0)
    if "lin0_d3_val" in d:  # stored by --add-depths: every depth of the linear fits as its own candidate
        pool = ("net", "probe", *(f"lin{s}_d{depth}" for s in (1, 0) for depth in range(4)))
        for rounds in (10, 20):
            weights = greedy_ensemble_weights([val(k) for k in pool], y_val, rounds=rounds)
            row[f"ensemble selection, every depth a candidate, {rounds} rounds"] = f1(
                sum(wk * test(k) for wk, k in zip(weights, pool, strict=True)))
    return row


def best_baselines(runs: pd.DataFrame, task: str, n: int, rep: str) -> tuple[str, pd.Series]:
    """The baseline with the best mean macro-F1 (over the 5 seeds) for this task, n and representation."""
    runs = runs[(runs.task == task) & (runs.n == n)]
    candidates = [m for m in runs.method.unique() if not m.startswith("refine")
                  and ("[" not in m or m.endswith(f"[{rep}]")) and runs[runs.method == m].seed.nunique() == 5]
    best = max(candidates, key=lambda m: runs[runs.method == m].macro_f1.mean())
    return best, runs[runs.method == best].set_index("seed").macro_f1


def report(folder: Path, out: Path, run: str) -> None:
    rows = pd.DataFrame([score_rules(p) for p in sorted(folder.glob("*.npz"))])
    baselines = pd.read_csv(RESULTS / "spatial_annotation-runs.csv")
    baselines = baselines[~baselines.method.str.startswith("logreg_probe")]  # the table this diagnostic started from
    crossfit = [c for c in rows.columns if "cross-fitted" in c or c == "netcf"]
    rules = [c for c in rows.columns
             if c not in ("task", "n", "rep", "seed", "weights", "net", "lin1", "lin0", "probe", *crossfit)]
    best = {}
    for (task, n, rep), _ in rows.groupby(["task", "n", "rep"]):
        best[(task, n, rep)] = best_baselines(baselines, task, n, rep)
    rows["best baseline"] = [best[(t, n, r)][1][s] for t, n, r, s in zip(rows.task, rows.n, rows.rep, rows.seed, strict=True)]
    rows.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        "# Combining REFINE's fitted models (diagnostic)", "",
        f"`python benchmarks/diagnose_combination.py` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, report of {time.strftime('%Y-%m-%d')} ({run}): the 30 settings of "
        "`spatial_annotation.md` (4 tasks x n x frozen representation `encoder` / `pca`), 5 seeds each, every "
        "candidate model fitted once and each rule scored offline on the stored probabilities. Best baseline = "
        "the baseline with the best mean macro-F1 in `spatial_annotation-runs.csv` before this change (the "
        "representation-free ones and those on the same representation); below = the mean paired difference "
        "is below minus two standard errors.", "",
        "| rule | mean macro-F1 | minus best baseline (mean over settings) | worst setting | level or ahead (>= -0.002) "
        "| below by > 2 SE |",
        "|---|---|---|---|---|---|",
    ]
    for rule in rules:
        diffs, below = [], 0
        for _, group in rows.groupby(["task", "n", "rep"]):
            d = group[rule] - group["best baseline"]
            diffs.append(d.mean())
            below += d.mean() < -2 * d.std(ddof=1) / np.sqrt(len(d))
        lines.append(f"| {rule} | {rows[rule].mean():.4f} | {np.mean(diffs):+.4f} | {np.min(diffs):+.3f} | "
                     f"{sum(x >= -0.002 for x in diffs)} / {len(diffs)} | {below} / {len(diffs)} |")
    lines += ["", "Members alone (mean macro-F1 over the 30 settings): "
              + ", ".join(f"`{k}` {rows[k].mean():.4f}" for k in ("net", "lin1", "lin0", "probe"))
              + " (`net` the SIGN network REFINE, `lin1` the linear residual, `lin0` it without the frozen block, "
              "`probe` the logistic regression on the frozen block alone).", "",
              "| task | n | rep | " + " | ".join(rules) + " | best baseline |",
              "|---|---|---|" + "---|" * (len(rules) + 1)]
    for (task, n, rep), group in rows.groupby(["task", "n", "rep"]):
        name = best[(task, n, rep)][0]
        lines.append(f"| {task} | {n} | {rep} | " + " | ".join(f"{group[r].mean():.3f}" for r in rules)
                     + f" | {name} {group['best baseline'].mean():.3f} |")
    if crossfit:
        lines += _crossfit_section(rows.dropna(subset=["netcf"]))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


def _crossfit_section(rows: pd.DataFrame) -> list[str]:
    """The settings with cross-fitted network fits (``--add-crossfit``): ensemble selection with the network's
    validation probabilities early-stopped on those cells (the default before) or cross-fitted."""
    rules = {"ensemble selection, small": "network early-stopped on the scored cells",
             "ensemble selection, cross-fitted network": "network cross-fitted (two runs, their mean predicts)",
             "ensemble selection, cross-fitted weights, one network": "cross-fitted weights, the network early-stopped on all validation cells predicts"}
    complete = rows.groupby(["task", "n", "rep"]).filter(lambda g: len(g) == 5)
    lines = ["", "### The network's validation probabilities: early-stopped on the scored cells, or cross-fitted", "",
             "The network member is early-stopped (and its depth and start chosen) on the validation cells that "
             "ensemble selection then scores it on: optimistic probabilities. `--add-crossfit` trains it twice "
             "more, each run choosing on one random half of the validation cells and scoring the other half; "
             f"settings with all 5 seeds of such fits: {complete.groupby(['task', 'n', 'rep']).ngroups}. "
             "Columns as in the first table.", "",
             "| rule | mean macro-F1 | minus best baseline (mean over settings) | worst setting | below by > 2 SE |",
             "|---|---|---|---|---|"]
    for rule, label in rules.items():
        diffs = [(g[rule] - g["best baseline"]) for _, g in complete.groupby(["task", "n", "rep"])]
        below = sum(d.mean() < -2 * d.std(ddof=1) / np.sqrt(len(d)) for d in diffs)
        lines.append(f"| {label} | {complete[rule].mean():.4f} | {np.mean([d.mean() for d in diffs]):+.4f} | "
                     f"{np.min([d.mean() for d in diffs]):+.3f} | {below} / {len(diffs)} |")
    lines += ["", "| task | n | rep | `net` | `netcf` | " + " | ".join(rules.values()) + " | best baseline |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (task, n, rep), g in complete.groupby(["task", "n", "rep"]):
        lines.append(f"| {task} | {n} | {rep} | {g.net.mean():.3f} | {g.netcf.mean():.3f} | "
                     + " | ".join(f"{g[r].mean():.3f}" for r in rules) + f" | {g['best baseline'].mean():.3f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", default=None, metavar="TASK:N")
    parser.add_argument("--reps", nargs="+", default=["encoder", "pca"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/diagnose_combination"), help="folder of stored fits")
    parser.add_argument("--report", type=Path, default=None, metavar="FOLDER", help="no fitting: score the stored fits")
    parser.add_argument("--run", default="", help="with --report: how and when the stored fits were made")
    parser.add_argument("--add-depths", action="store_true", help="add every depth's linear fits to stored fits")
    parser.add_argument("--add-crossfit", action="store_true", help="add cross-fitted network fits to stored fits")
    args = parser.parse_args(argv)
    if args.report:
        report(args.report, RESULTS / "diagnose_combination", args.run)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    settings = {s.name: s for s in load_settings()[0]}
    chosen = args.settings or [f"{name}:{n}" for name in settings for n in (100, 300, 1000, 3000)
                               if n <= 0.8 * settings[name].reference.n_obs]
    for item in chosen:
        name, n = item.split(":")
        for rep in args.reps:
            for seed in args.seeds:
                step = add_crossfit if args.add_crossfit else add_depths if args.add_depths else fit_setting
                step(settings[name], int(n), rep, seed, args.out)


if __name__ == "__main__":
    main()
