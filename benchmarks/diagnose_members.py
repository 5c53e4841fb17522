"""Which of REFINE's ensemble members carry a setting's result? Score each kept member alone on the test cells.

REFINE's default (``hidden="auto"``) weights four fits by ensemble selection on the validation cells of the
labelled slice. For one task x n x representation of ``spatial_annotation.py`` (same labelled cells, seeds and
package defaults with the unweighted losses the committed results were measured with) this trains the default
model of that time and scores, on the test cells, the ensemble and each kept member
alone (the cross-fitted network: its two runs' mean), next to each candidate's validation loss and weight: it
shows whether validation weighed the members as the test cells would have.

    python benchmarks/diagnose_members.py --setting merfish-cellclass:3000:pca
    # -> benchmarks/results/diagnose_members.{md,csv}
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

import pandas as pd
import torch
from diagnose_rep_penalty import label_subset
from sklearn.metrics import f1_score
from spatial_annotation import REP_KEYS, RESULTS, load_settings

import spatial_refine as sr

#: the loss weighting the committed results were measured with (the default before 2026-12-02); the
#: package default is now class_weight="effective"
UNWEIGHTED = None


def _macro_f1(model: sr.RefineAnnotator, members: list, target, test, y_true) -> float:
    """Test macro-F1 of ``members`` alone (their weights renormalised); ``model`` is left as it was."""
    kept = model.members_
    total = sum(m.weight for m in members)
    model.members_ = [dataclasses.replace(m, weight=m.weight / total) for m in members]
    try:
        proba = model.predict(target)
    finally:
        model.members_ = kept
    if test is not None:
        proba = proba.iloc[test]
    return f1_score(y_true, proba.columns.to_numpy()[proba.to_numpy().argmax(1)], average="macro")


def run(task: str, n: int, rep: str, seeds: list[int]) -> pd.DataFrame:
    settings, _ = load_settings()
    setting = next(s for s in settings if s.name == task)
    target = setting.query if setting.query is not None else setting.reference
    rows = []
    for seed in seeds:
        test, y_true = label_subset(setting, n, seed)
        model = sr.RefineAnnotator(setting.reference, "_train_labels", rep_key=REP_KEYS[rep]).train(class_weight=UNWEIGHTED, random_state=seed)
        del setting.reference.obs["_train_labels"]
        weights = model.metrics_["ensemble_weights"]
        rows.append({"seed": seed, "member": "ensemble", "weight": 1.0, "n_layers": None,
                     "val_loss": model.metrics_["val_loss"],
                     "test_macro_f1": _macro_f1(model, model.members_, target, test, y_true)})
        for name, val_loss in model.metrics_["hidden_tried"].items():
            members = [m for m in model.members_ if m.name == name]
            rows.append({
                "seed": seed, "member": name, "weight": weights.get(name, 0.0),
                "n_layers": members[0].n_layers if members else None, "val_loss": val_loss,
                "test_macro_f1": _macro_f1(model, members, target, test, y_true) if members else None,
            })
        print(pd.DataFrame(rows[-5:]).round(4).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", default="merfish-cellclass:3000:pca", metavar="TASK:N:REP")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    task, n, rep = args.setting.split(":")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    runs = run(task, int(n), rep, args.seeds)
    runs.to_csv(RESULTS / "diagnose_members.csv", index=False)
    lines = [
        f"# REFINE's ensemble members scored alone: {task}, n = {n}, {rep} (diagnostic)",
        "",
        f"`python benchmarks/diagnose_members.py {' '.join(sys.argv[1:] if argv is None else argv)}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, {time.time() - start:.0f} s. The package default "
        "(`hidden=\"auto\"`) trained as in `spatial_annotation.py`; per seed, each candidate's validation loss (on "
        "the labelled slice), its ensemble weight and depth, and the test macro-F1 of each kept member alone "
        "(blank: weight 0, not kept).",
        "",
        "| seed | member | weight | depth | validation loss | test macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for row in runs.itertuples():
        depth = "" if pd.isna(row.n_layers) else int(row.n_layers)
        f1 = "" if pd.isna(row.test_macro_f1) else f"{row.test_macro_f1:.3f}"
        lines.append(f"| {row.seed} | {row.member} | {row.weight:.2f} | {depth} | {row.val_loss:.3f} | {f1} |")
    (RESULTS / "diagnose_members.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
