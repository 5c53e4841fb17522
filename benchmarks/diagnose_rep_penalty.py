"""Would a stronger L2 penalty on the frozen block help REFINE's linear residual? A diagnostic.

REFINE's linear residual is a logistic regression on ``[x, Px, ..., f_rep]`` with one L2 strength (C=1 on
standardised features) for every column. Multiplying the standardised frozen-representation columns by
``s < 1`` before the fit (and folding ``s`` back into the weights) penalises that block ``1 / s^2`` times as
hard as the hop features. For each labelled subset of ``spatial_annotation.py`` (same tasks, same sampling,
the pretrained ``encoder`` representation) the linear residual is fitted with the package's depth search and
refit at each ``s``; the table gives the test macro-F1 at each ``s`` and with ``s`` picked per seed by the
validation loss. Not the package default: a lead, measured.

    python benchmarks/diagnose_rep_penalty.py
    # -> benchmarks/results/diagnose_rep_penalty.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler
from spatial_annotation import REP_KEYS, RESULTS, _sample_labelled, load_settings

from spatial_refine.annotator import RefineAnnotator

OUT = RESULTS / "diagnose_rep_penalty"
SCALES = (1.0, 0.5, 0.25, 0.1)
SETTINGS = (
    ("osmfish-cluster", 300), ("osmfish-cluster", 1000), ("osmfish-region", 1000),
    ("seqfish-celltype", 300), ("seqfish-celltype", 1000), ("merfish-cellclass", 1000), ("merfish-cellclass", 3000),
)


class _RepScaledLinear(RefineAnnotator):
    """The linear residual with the standardised frozen block multiplied by ``rep_scale`` before the fit."""

    rep_scale = 1.0

    def _train_sklearn(self, inputs, train_pos, depth, random_state, class_weight=None):
        features = self._sklearn_inputs(inputs, depth, self.labelled_[train_pos])
        scaler = StandardScaler().fit(features)
        block = np.ones(features.shape[1])
        block[-inputs.rep.shape[1]:] = self.rep_scale
        clf = LogisticRegression(max_iter=1000, class_weight=class_weight, random_state=random_state)
        clf.fit(scaler.transform(features) * block, self.codes_[train_pos])
        if len(clf.classes_) == 2:
            raise ValueError("diagnostic written for multi-class tasks (one weight row per class)")
        coef = clf.coef_ * block / scaler.scale_  # fold the block scale and the scaler into the weights
        weight = np.zeros((len(self.classes_), features.shape[1]), dtype=np.float32)
        bias = np.full(len(self.classes_), -np.inf, dtype=np.float32)  # classes absent from the fit
        weight[clf.classes_], bias[clf.classes_] = coef, clf.intercept_ - coef @ scaler.mean_
        return {"weight": weight, "bias": bias}, None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--report", default=None, metavar="RUN", help="no fitting: rewrite the markdown from the "
                        "committed CSV, RUN saying where and when it ran")
    args = parser.parse_args(argv)
    if args.report:
        write_report(pd.read_csv(OUT.with_suffix(".csv")), args.report)
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    settings = {s.name: s for s in load_settings()[0]}
    rows = []
    for name, n in SETTINGS:
        setting = settings[name]
        reference = setting.reference
        truth = reference.obs[setting.labels_key].astype(str).to_numpy()
        for seed in args.seeds:
            labelled = _sample_labelled(pd.Series(truth), n, seed)
            labels = np.full(reference.n_obs, np.nan, dtype=object)
            labels[labelled] = truth[labelled]
            reference.obs["_train_labels"] = pd.Categorical(labels)
            test = None if setting.query is not None else np.setdiff1d(np.arange(reference.n_obs), labelled)
            y_true = truth[test] if test is not None else setting.query.obs[setting.labels_key].astype(str).to_numpy()
            for scale in SCALES:
                _RepScaledLinear.rep_scale = scale
                model = _RepScaledLinear(reference, "_train_labels", rep_key=REP_KEYS["encoder"], hidden=None)
                model.train(random_state=seed)
                proba = model.predict(setting.query) if test is None else model.predict(reference).iloc[test]
                predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
                rows.append({"task": name, "n": n, "seed": seed, "rep_scale": scale, "n_layers": model.n_layers_,
                             "macro_f1": f1_score(y_true, predicted, average="macro"),
                             "val_loss": model.metrics_["val_loss"]})
            del reference.obs["_train_labels"]
            print(pd.DataFrame(rows[-len(SCALES):]).to_string(index=False, header=False), flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(OUT.with_suffix(".csv"), index=False)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    run = f"`python benchmarks/diagnose_rep_penalty.py` on {machine}, {time.strftime('%Y-%m-%d')}, "
    write_report(runs, run + f"{time.perf_counter() - start:.0f} s")


def write_report(runs: pd.DataFrame, run: str) -> None:
    """The markdown table: test macro-F1 per scale, and with the scale picked per seed on validation."""
    table = runs.pivot_table(index=["task", "n"], columns="rep_scale", values="macro_f1")
    table = table[sorted(table.columns, reverse=True)]
    picked = runs.loc[runs.groupby(["task", "n", "seed"]).val_loss.idxmin()].groupby(["task", "n"])
    seeds = ", ".join(map(str, sorted(runs.seed.unique())))
    lines = [
        "# A stronger L2 penalty on the frozen block of REFINE's linear residual (diagnostic)", "",
        f"{run}. Test macro-F1 of the linear residual (`hidden=None`, depth chosen on validation, refitted on all "
        f"labelled cells; frozen representation `encoder`), mean over seeds {seeds}, for each scale s of the "
        "standardised frozen block (its L2 penalty times 1/s^2; s = 1 is the package), and with s picked per seed "
        "by the validation loss (the picks listed). Not the package default.", "",
        "| task | n | " + " | ".join(f"s = {c:g}" for c in table.columns) + " | s picked on validation | picks |",
        "|---|---|" + "---|" * (len(table.columns) + 2),
    ]
    for (task, n), row in table.iterrows():
        group = picked.get_group((task, n))
        cells = " | ".join(f"{v:.3f}" for v in row)
        picks = " ".join(f"{v:g}" for v in group.rep_scale)
        lines.append(f"| {task} | {n} | {cells} | {group.macro_f1.mean():.3f} | {picks} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(OUT.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
