"""Would a stronger L2 penalty on the frozen block help REFINE's linear residual? A diagnostic.

REFINE's linear residual is a logistic regression on ``[x, Px, ..., f_rep]`` with one L2 strength (C=1 on
standardised features) for every column. Multiplying the standardised frozen-representation columns by
``s < 1`` before the fit (and folding ``s`` back into the weights) penalises that block ``1 / s^2`` times as
hard as the hop features. For each labelled subset of ``spatial_annotation.py`` (same tasks, same sampling,
the pretrained ``encoder`` representation) the linear residual is fitted with the package's depth search and
refit at each ``s``; the table gives the test macro-F1 at each ``s`` and with ``s`` picked per seed by the
validation loss. With ``--network`` each seed also trains the SIGN network member of the default
(``hidden=64``) and scores the average of its probabilities with each linear model's (what the default
``hidden="auto"`` would predict with that penalty). Not the package default: a lead, measured.

    python benchmarks/diagnose_rep_penalty.py
    # -> benchmarks/results/diagnose_rep_penalty.{md,csv}
    python benchmarks/diagnose_rep_penalty.py --network --settings osmfish-cluster:1000 osmfish-region:1000 \
        merfish-cellclass:3000 seqfish-celltype:300
    # -> benchmarks/results/diagnose_rep_penalty_average.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler
from spatial_annotation import REP_KEYS, RESULTS, _sample_labelled, load_settings

from spatial_refine.annotator import RefineAnnotator

#: the loss weighting the committed results were measured with (the default before 2026-12-02); the
#: package default is now class_weight="effective"
UNWEIGHTED = None

SCALES = (1.0, 0.5, 0.25, 0.1)
SETTINGS = (
    ("osmfish-cluster", 300), ("osmfish-cluster", 1000), ("osmfish-region", 1000),
    ("seqfish-celltype", 300), ("seqfish-celltype", 1000), ("merfish-cellclass", 1000), ("merfish-cellclass", 3000),
)


class _RepScaledLinear(RefineAnnotator):
    """The linear residual with the standardised frozen block multiplied by ``rep_scale`` before the fit."""

    rep_scale = 1.0

    def _train_sklearn(self, inputs, train_pos, depth, random_state, class_weight=None, kind="all"):
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


def label_subset(setting, n: int, seed: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Label ``n`` cells of the reference as ``spatial_annotation.py`` samples them, in
    ``reference.obs["_train_labels"]`` (the caller deletes it); return the test cells of the reference
    (``None``: the test cells are the query slice) and their true labels."""
    reference = setting.reference
    truth = reference.obs[setting.labels_key].astype(str).to_numpy()
    labelled = _sample_labelled(pd.Series(truth), n, seed)
    labels = np.full(reference.n_obs, np.nan, dtype=object)
    labels[labelled] = truth[labelled]
    reference.obs["_train_labels"] = pd.Categorical(labels)
    if setting.query is not None:
        return None, setting.query.obs[setting.labels_key].astype(str).to_numpy()
    test = np.setdiff1d(np.arange(reference.n_obs), labelled)
    return test, truth[test]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", default=None, metavar="TASK:N", help="subset of the settings")
    parser.add_argument("--network", action="store_true", help="also score the average with the network member")
    parser.add_argument("--report", default=None, metavar="RUN", help="no fitting: rewrite the markdown from the "
                        "committed CSV, RUN saying where and when it ran")
    args = parser.parse_args(argv)
    out = RESULTS / ("diagnose_rep_penalty_average" if args.network else "diagnose_rep_penalty")
    if args.report:
        write_report(pd.read_csv(out.with_suffix(".csv")), args.report, out)
        return
    chosen = SETTINGS if args.settings is None else [(t, int(n)) for t, n in (a.split(":") for a in args.settings)]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    settings = {s.name: s for s in load_settings()[0]}
    rows = []
    for name, n in chosen:
        setting = settings[name]
        reference = setting.reference
        for seed in args.seeds:
            test, y_true = label_subset(setting, n, seed)

            def test_proba(model: RefineAnnotator) -> pd.DataFrame:
                return model.predict(setting.query) if test is None else model.predict(reference).iloc[test]  # noqa: B023

            def f1(proba: pd.DataFrame) -> float:
                return f1_score(y_true, proba.columns.to_numpy()[proba.to_numpy().argmax(1)], average="macro")  # noqa: B023

            network = None
            if args.network:
                network = RefineAnnotator(reference, "_train_labels", rep_key=REP_KEYS["encoder"], hidden=64)
                network_proba = test_proba(network.train(class_weight=UNWEIGHTED, random_state=seed))
            for scale in SCALES:
                _RepScaledLinear.rep_scale = scale
                model = _RepScaledLinear(reference, "_train_labels", rep_key=REP_KEYS["encoder"], hidden=None)
                model.train(class_weight=UNWEIGHTED, random_state=seed)
                proba = test_proba(model)
                rows.append({"task": name, "n": n, "seed": seed, "rep_scale": scale, "n_layers": model.n_layers_,
                             "macro_f1": f1(proba), "val_loss": model.metrics_["val_loss"]})
                if network is not None:
                    rows[-1]["average_macro_f1"] = f1((proba + network_proba) / 2)
            del reference.obs["_train_labels"]
            print(pd.DataFrame(rows[-len(SCALES):]).to_string(index=False, header=False), flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(out.with_suffix(".csv"), index=False)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    command = " ".join(["python benchmarks/diagnose_rep_penalty.py", *(argv if argv is not None else sys.argv[1:])])
    run = f"`{command}` on {machine}, {time.strftime('%Y-%m-%d')}, "
    write_report(runs, run + f"{time.perf_counter() - start:.0f} s", out)


def write_report(runs: pd.DataFrame, run: str, out: Path) -> None:
    """The markdown table: test macro-F1 per scale, and with the scale picked per seed on validation."""
    metric = "average_macro_f1" if "average_macro_f1" in runs else "macro_f1"
    table = runs.pivot_table(index=["task", "n"], columns="rep_scale", values=metric)
    table = table[sorted(table.columns, reverse=True)]
    picked = runs.loc[runs.groupby(["task", "n", "seed"]).val_loss.idxmin()].groupby(["task", "n"])
    seeds = ", ".join(map(str, sorted(runs.seed.unique())))
    lines = [
        "# A stronger L2 penalty on the frozen block of REFINE's linear residual (diagnostic)", "",
        f"{run}. Test macro-F1 of "
        + ("the average of the network member (`hidden=64`) and " if metric != "macro_f1" else "")
        + "the linear residual (`hidden=None`, depth chosen on validation, refitted on all "
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
        lines.append(f"| {task} | {n} | {cells} | {group[metric].mean():.3f} | {picks} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
