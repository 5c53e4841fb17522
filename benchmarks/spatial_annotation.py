"""The real spatial benchmark of issue 4: REFINE vs every baseline on seqFISH, MERFISH and osmFISH.

Settings (one per task)
-----------------------
- ``seqfish-celltype``: seqFISH mouse embryos, 23 cell types ("Low quality" dropped). Source encoder
  pretrained on embryo3, labelled cells drawn from embryo1, test = every cell of embryo2 (a new slice,
  annotated through the model's ``predict`` on that slice's own graph; ``refine`` is trained with that slice in
  its AnnData, unlabelled, and self-trains on it: :data:`WITH_QUERY_METHODS`).
- ``merfish-cellclass``: MERFISH hypothalamus, 15 cell classes. Source on slice ``7.0.16``, labelled cells
  from ``1.-0.09``, test = slice ``7.-0.09``.
- ``osmfish-region``: osmFISH cortex, 11 anatomical regions (one slice). Source pretrained on the other
  task (``ClusterName``) of the same cells; labelled cells drawn at random, test = the other cells.
- ``osmfish-cluster``: osmFISH, 31 cell types; source pretrained on ``Region``.

Frozen representations (no real scGPT weights are reachable here)
-----------------------------------------------------------------
- ``encoder``: an expression MLP (genes -> 256 -> 64) trained on the source cells' labels (see above),
  then frozen; its 64-d penultimate layer is ``f_rep``.
- ``pca``: PCA of the labelled slice (50 components, 20 for osmFISH's 33 genes), applied unchanged to the
  test slice.
- ``scgpt`` with ``--scgpt DIR``: :func:`spatial_refine.tl.scgpt_embed` with that checkpoint folder.

Methods: ``logreg`` (expression), ``neighbor_logreg`` (cell + mean of 1..L-hop neighbours, L chosen on
validation), ``mlp`` and ``gnn`` from scratch (``gnn``: the default SIGN encoder; ``gnn_sage``: torch-geometric
GraphSAGE with self path and jumping knowledge), ``linear_probe`` / ``adapter`` / ``refine`` on each frozen
representation, ``logreg_probe`` (scikit-learn's logistic regression on the standardised frozen representation,
all labelled cells). On request: ``refine_linear`` (REFINE with the linear residual ``hidden=None``: a logistic
regression on the hop features and the frozen representation), ``refine_unweighted`` (REFINE as before
class-weighted losses became the default), ``refine_bal`` (REFINE with class-balanced losses, the default before
effective-number weights) and ``scanvi`` (``pip install -e ".[bench]"``): scvi-tools' scANVI on the reference and
the test slice together, Gaussian likelihood on the log-normalised expression, 100 scVI + 20 scANVI epochs.

Loss weighting (:func:`class_weight_of`, also a column of the runs file): ``refine`` is the package default,
effective-number weights (``train(class_weight="effective")``); each baseline runs three times: unweighted as a
user writes it in ten lines (scikit-learn's default; ``class_weight=None`` for the package's networks), with the
package default as ``<method>_eff`` and class-balanced (scikit-learn's ``"balanced"``) as ``<method>_bal``, so
REFINE is compared with the best of the three; ``gnn_sage``, ``scanvi``, ``refine_linear`` and
``refine_unweighted`` are unweighted. Otherwise every method uses the package defaults
(``sr.RefineAnnotator(...).train(random_state=seed, class_weight=...)``): nothing is tuned per dataset. n labelled
cells in {100, 300, 1000, 3000} (as the slice allows), 5 seeds; classes drawn only once in a sample are dropped
from that sample (the annotator needs two cells per class).

Run ``python benchmarks/spatial_annotation.py`` (``--quick`` for a smoke run); writes
``benchmarks/results/spatial_annotation{,-runs}.csv``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import spatial_refine as sr
from spatial_refine.annotator import effective_number_weights
from spatial_refine.encoders import MLPEncoder
from spatial_refine.refine import TensorBatches, TrainConfig, build_strategy, fit, seeded

RESULTS = Path(__file__).parent / "results"
REP_FREE = ("logreg", "neighbor_logreg", "mlp", "gnn", "gnn_sage")
#: scANVI (scvi-tools, optional: ``pip install scvi-tools``); not in the default method list
SCANVI_EPOCHS = (100, 20)  # scVI, then scANVI: fewer than scvi-tools' own heuristic (400 + 20), for CPU time
#: benchmark method -> annotator options (the default encoder is SIGN; ``gnn_sage`` is a torch-geometric GraphSAGE)
METHOD_OPTIONS = {
    "gnn_sage": {"strategy": "gnn", "encoder": "sage"},
    "refine_linear": {"strategy": "refine", "hidden": None},  # linear residual: logreg on [hops, f_rep]
    "refine_unweighted": {"strategy": "refine"},  # the default before class-weighted losses
    "refine_bal": {"strategy": "refine"},  # class-balanced: the default before effective-number weights
}
#: methods trained with the task's new slice in the AnnData, unlabelled, beside the reference (one graph per slice),
#: as the package recommends for annotating new slices: REFINE's default self-training (``train(self_training=
#: "auto")``) then adapts to them. The baselines are trained on the reference alone, as their users write them
WITH_QUERY_METHODS = ("refine",)
#: baselines also run in the package's two loss weightings: ``<method>_eff`` (``train(class_weight="effective")``,
#: the package default) and ``<method>_bal`` (``"balanced"``, the default before)
WEIGHTED_BASELINES = ("logreg", "neighbor_logreg", "mlp", "gnn", "linear_probe", "logreg_probe", "adapter")
REP_METHODS = ("linear_probe", "logreg_probe", "adapter", "refine", "refine_linear", "refine_unweighted", "refine_bal")
REP_METHODS = (*REP_METHODS, *(f"{m}{w}" for w in ("_bal", "_eff") for m in REP_METHODS if m in WEIGHTED_BASELINES))
DEFAULT_METHODS = (*REP_FREE, *(f"{m}{w}" for w in ("_bal", "_eff") for m in REP_FREE if m in WEIGHTED_BASELINES),
                   *REP_METHODS)
#: run on request only: ablations of REFINE measured in earlier runs (see the results' narrative)
OPTIONAL_METHODS = ("refine_linear", "refine_unweighted", "refine_bal", "scanvi")
DEFAULT_METHODS = tuple(m for m in DEFAULT_METHODS if m not in OPTIONAL_METHODS)


def class_weight_of(method: str) -> str | None:
    """``train(class_weight=...)`` of a benchmark method: the package default, effective-number weights, for
    ``refine`` and the ``_eff`` baselines; class-balanced for ``refine_bal`` and the ``_bal`` baselines; unweighted
    for the plain baselines (scikit-learn's default, as a user writes them in ten lines) and for the REFINE
    ablations ``refine_linear`` and ``refine_unweighted``, as they were run."""
    if method == "refine" or method.endswith("_eff"):
        return "effective"
    return "balanced" if method.endswith("_bal") else None


def _base_method(method: str) -> str:
    return method.removesuffix("_bal").removesuffix("_eff")


@dataclass
class Setting:
    """One benchmark task: the labelled (reference) slice, the test cells, and the source's cells."""

    name: str
    reference: object  # AnnData with obsm reps and graph
    query: object | None  # a different slice (None: test on the reference's unlabelled cells)
    labels_key: str
    n_pca: int
    joint: object | None = field(default=None, repr=False)  # reference + query in one AnnData, see with_query_slice


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float32)


def _log_normalise(adata):
    import scanpy as sc

    sc.pp.normalize_total(adata, target_sum=100.0)
    sc.pp.log1p(adata)


def _pretrain_encoder(source, labels_key: str, random_state: int = 0):
    """Train an expression MLP on the source cells' labels; return a function cells -> 64-d features."""
    x = _dense(source.X)
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    codes = pd.Categorical(source.obs[labels_key].astype(str)).codes.astype(np.int64)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(x))
    n_val = len(x) // 10
    val, train = order[:n_val], order[n_val:]
    with seeded(random_state):
        model = build_strategy("notrans", n_outputs=int(codes.max()) + 1, encoder=MLPEncoder(x.shape[1], (256, 64), 0.2))

    def batches(rows, shuffle):
        tensors = {"x": torch.from_numpy((x[rows] - mean) / std), "y": torch.from_numpy(codes[rows])}
        return TensorBatches(tensors, batch_size=128, shuffle=shuffle)

    fit(model, batches(train, True), batches(val, False), config=TrainConfig(lr=1e-3, weight_decay=1e-4, max_epochs=200,
                                                                             patience=20, random_state=random_state))
    encoder = model.encoder.eval()

    @torch.no_grad()
    def embed(adata) -> np.ndarray:
        values = _dense(adata.X)
        return encoder(torch.from_numpy((values - mean) / std)).numpy()

    return embed


def _pin_torch_threads() -> None:
    """torch's threads = ``OMP_NUM_THREADS`` (default 1), set again before each training: something in a run
    raises them to the core count (2026-12-02: a run started with 1 thread reported 2 at its end; the likely
    source is scanpy's numba kernels, whose OpenMP layer uses ``NUMBA_NUM_THREADS`` = the core count, not
    isolated). The thread count can change the fits: 2 threads moved REFINE on the pretrained encoder by up to
    0.0024 macro-F1 against 1 (``results/spatial_annotation_repro-runs.csv``)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def _add_reps(reference, query, source, source_key: str, n_pca: int, scgpt: str | None) -> list[str]:
    from sklearn.decomposition import PCA

    _pin_torch_threads()
    embed = _pretrain_encoder(source, source_key)
    targets = [reference] + ([query] if query is not None else [])
    for adata in targets:
        adata.obsm["X_encoder"] = embed(adata)
    pca = PCA(n_components=n_pca, random_state=0).fit(_dense(reference.X))
    for adata in targets:
        adata.obsm["X_pca_ref"] = pca.transform(_dense(adata.X)).astype(np.float32)
    reps = ["encoder", "pca"]
    if scgpt:
        for adata in targets:
            sr.tl.scgpt_embed(adata, scgpt, gene_symbol_case="upper", key_added="X_scgpt")
        reps.append("scgpt")
    return reps


REP_KEYS = {"encoder": "X_encoder", "pca": "X_pca_ref", "scgpt": "X_scgpt"}
TASKS = ("seqfish-celltype", "merfish-cellclass", "osmfish-region", "osmfish-cluster")


def load_settings(scgpt: str | None = None, tasks: list[str] | None = None) -> tuple[list[Setting], list[str]]:
    """The benchmark tasks (``tasks``: a subset of their names; every one by default) and the frozen
    representations. Each task's encoder and PCA are seeded on their own, so a subset gives the same ones."""
    settings, reps = [], ["encoder", "pca"] + (["scgpt"] if scgpt else [])
    wanted = set(TASKS if tasks is None else tasks)
    if "seqfish-celltype" in wanted:
        seq = sr.datasets.seqfish_embryo()
        seq = seq[seq.obs["celltype"] != "Low quality"].copy()
        seq.obs["celltype"] = seq.obs["celltype"].cat.remove_unused_categories()
        ref, query, source = (seq[seq.obs["sample"] == s].copy() for s in ("embryo1", "embryo2", "embryo3"))
        for adata in (ref, query):
            sr.pp.spatial_neighbors(adata)
        _add_reps(ref, query, source, "celltype", 50, scgpt)
        settings.append(Setting("seqfish-celltype", ref, query, "celltype", 50))

    if "merfish-cellclass" in wanted:
        mer = sr.datasets.merfish_hypothalamus()
        ref, query, source = (mer[mer.obs["samples"] == s].copy() for s in ("1.-0.09", "7.-0.09", "7.0.16"))
        for adata in (ref, query):
            sr.pp.spatial_neighbors(adata)
        _add_reps(ref, query, source, "Cell_class", 50, scgpt)
        settings.append(Setting("merfish-cellclass", ref, query, "Cell_class", 50))

    for target, other in (("Region", "ClusterName"), ("ClusterName", "Region")):
        name = "osmfish-region" if target == "Region" else "osmfish-cluster"
        if name not in wanted:
            continue
        osm = sr.datasets.osmfish_cortex()
        _log_normalise(osm)
        sr.pp.spatial_neighbors(osm)
        _add_reps(osm, None, osm, other, 20, scgpt)
        settings.append(Setting(name, osm, None, target, 20))
    return settings, reps


def _sample_labelled(labels: pd.Series, n: int, seed: int) -> np.ndarray:
    """n cells at random; classes drawn once are dropped (a class needs two labelled cells)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(labels), size=n, replace=False)
    counts = labels.iloc[chosen].value_counts()
    keep = labels.iloc[chosen].map(counts).to_numpy() >= 2
    return np.sort(chosen[keep])


def labelled_samples(setting: Setting, ns: list[int], seeds: list[int]):
    """``(n, seed, labelled cells)`` of each label budget and seed, as every spatial benchmark draws them; budgets
    above 80 % of the reference's cells are skipped (too few test cells left)."""
    truth = setting.reference.obs[setting.labels_key].astype(str).reset_index(drop=True)
    for n in ns:
        if n > 0.8 * setting.reference.n_obs:
            continue
        for seed in seeds:
            yield n, seed, _sample_labelled(truth, n, seed)


def _scanvi_predict(setting: Setting, train_labels: np.ndarray, seed: int) -> np.ndarray:
    """scANVI label transfer as its users run it: one model on the reference and the test slice together
    (batch = slice; unlabelled cells ``"Unknown"``), scVI pretrained then scANVI; returns the labels of the
    test cells (the query slice, or every reference cell). Gaussian likelihood: the expression here is
    log-normalised, not counts."""
    try:
        import anndata as ad
        import scvi
    except ImportError as error:
        raise SystemExit("The scanvi method needs scvi-tools: pip install scvi-tools") from error

    def frame(adata, labels, batch):
        out = ad.AnnData(_dense(adata.X), obs=pd.DataFrame(index=adata.obs_names.astype(str)))
        out.obs["y"], out.obs["batch"] = labels, batch
        return out

    labels = np.where(pd.isna(train_labels), "Unknown", train_labels).astype(str)
    parts = [frame(setting.reference, labels, "reference")]
    if setting.query is not None:
        parts.append(frame(setting.query, "Unknown", "query"))
    both = ad.concat(parts, index_unique="-")
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(both, batch_key="batch", labels_key="y")
    model = scvi.model.SCVI(both, gene_likelihood="normal", n_latent=20)
    model.train(max_epochs=SCANVI_EPOCHS[0], enable_progress_bar=False, accelerator="cpu")
    scanvi = scvi.model.SCANVI.from_scvi_model(model, unlabeled_category="Unknown")
    scanvi.train(max_epochs=SCANVI_EPOCHS[1], n_samples_per_label=100, enable_progress_bar=False, accelerator="cpu")
    predicted = np.asarray(scanvi.predict(both)).astype(str)
    return predicted[setting.reference.n_obs:] if setting.query is not None else predicted


def train_and_predict(setting: Setting, labelled: np.ndarray, seed: int, *, class_weight=None,
                      train_options: dict | None = None, with_query: bool = False, **options):
    """A :class:`~spatial_refine.RefineAnnotator` (``options``: its constructor's; ``train_options``: more of
    ``train``'s) trained on the ``labelled`` reference cells; returns it, its predicted labels of the test cells
    (the query slice, or the reference's other cells) and their true labels. ``with_query``: the query slice (if
    the task has one) is in the training AnnData too, unlabelled, beside the reference (one graph per slice), as
    scANVI's users and self-training (``train(self_training=...)``) use it; its cells are then predicted there."""
    reference = setting.reference
    joint = with_query and setting.query is not None
    data = with_query_slice(setting) if joint else reference  # reference cells first: `labelled` holds there
    truth = reference.obs[setting.labels_key].astype(str).to_numpy()
    train_labels = np.full(data.n_obs, np.nan, dtype=object)
    train_labels[labelled] = truth[labelled]
    data.obs["_train_labels"] = pd.Categorical(train_labels)
    try:
        model = sr.RefineAnnotator(data, "_train_labels", **options)
        model.train(random_state=seed, class_weight=class_weight, **(train_options or {}))
    finally:
        del data.obs["_train_labels"]
    if setting.query is not None:  # the new slice: in the joint AnnData (after the reference's cells), or its own
        proba = model.predict(data).iloc[reference.n_obs:] if joint else model.predict(setting.query)
        y_true = setting.query.obs[setting.labels_key].astype(str).to_numpy()
    else:
        test = np.setdiff1d(np.arange(reference.n_obs), labelled)
        proba, y_true = model.predict(reference).iloc[test], truth[test]
    return model, proba.columns.to_numpy()[proba.to_numpy().argmax(1)], y_true


def with_query_slice(setting: Setting):
    """The reference and the query slice in one AnnData (reference cells first; shared genes and ``obsm`` keys),
    its graph built by :func:`spatial_refine.pp.spatial_neighbors` with ``library_key="_slice"`` (checked equal to
    the two slices' own graphs: no edge across them); made once per setting."""
    if setting.joint is None:
        import anndata as ad
        import scipy.sparse as sp

        joint = ad.concat([setting.reference, setting.query], join="inner", label="_slice",
                          keys=["reference", "query"], index_unique="-")
        sr.pp.spatial_neighbors(joint, library_key="_slice")
        key = "spatial_connectivities"
        apart = sp.block_diag([setting.reference.obsp[key], setting.query.obsp[key]], format="csr")
        if (abs(joint.obsp[key] - apart) > 1e-6).nnz:
            raise RuntimeError("the joint graph differs from the slices' own graphs")
        setting.joint = joint
    return setting.joint


def per_task_cli(doc: str, default_reps: list[str]) -> argparse.ArgumentParser:
    """The command line of a per-task diagnostic: ``--task``, ``--n``, ``--rep``, ``--seeds``, ``--out`` (runs CSV
    of one task) or ``--report`` (merge such CSVs); :func:`run_task_or_report` acts on it."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--n", type=int, nargs="+")
    parser.add_argument("--rep", nargs="+", choices=sorted(REP_KEYS), default=default_reps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default=None, help="runs CSV of this task")
    parser.add_argument("--report", nargs="+", metavar="RUNS_CSV", help="merge per-task runs into the report")
    return parser


def run_task_or_report(parser: argparse.ArgumentParser, args: argparse.Namespace, stem: str, run, report) -> None:
    """``report(paths)`` with ``--report``; else ``run(args)`` (a DataFrame) written to ``--out`` or
    ``results/{stem}-{task}.csv``."""
    if args.report:
        report(args.report)
        return
    if args.task is None or args.n is None:
        parser.error("--task and --n are required (or --report)")
    run(args).to_csv(args.out or RESULTS / f"{stem}-{args.task}.csv", index=False)


def standard_error(values) -> float:
    """Standard error of the mean of ``values`` (sample std, ``ddof=1``); NaN for fewer than two."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def write_report(path: Path, lines: list[str], reading: str = "\n### Reading") -> None:
    """Write a generated report, keeping the hand-written part of the existing one (from the ``reading``
    heading on), and print it."""
    kept = path.read_text().partition(reading)[1:] if path.exists() else ("", "")
    path.write_text("\n".join(lines) + "\n" + "".join(kept))
    print("\n".join(lines))


def run_one(setting: Setting, method: str, rep: str | None, labelled: np.ndarray, seed: int) -> dict:
    reference = setting.reference
    truth = reference.obs[setting.labels_key].astype(str).to_numpy()
    train_labels = np.full(reference.n_obs, np.nan, dtype=object)
    train_labels[labelled] = truth[labelled]
    if setting.query is not None:
        test, y_true = None, setting.query.obs[setting.labels_key].astype(str).to_numpy()
    else:
        test = np.setdiff1d(np.arange(reference.n_obs), labelled)
        y_true = truth[test]
    start = time.perf_counter()
    extra: dict = {"n_layers": None, "start": None}
    if method == "scanvi":
        y_pred = _scanvi_predict(setting, train_labels, seed)
        y_pred = y_pred if test is None else y_pred[test]
    elif _base_method(method) == "logreg_probe":  # the ten-line probe: scikit-learn's logistic regression on the standardised rep
        rep_matrix = setting.reference.obsm[REP_KEYS[rep]]
        class_weight = class_weight_of(method)
        if class_weight == "effective":  # scikit-learn takes them as a dict
            classes, counts = np.unique(truth[labelled], return_counts=True)
            class_weight = dict(zip(classes, effective_number_weights(counts), strict=True))
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight=class_weight,
                                                                   random_state=seed))
        probe.fit(rep_matrix[labelled], truth[labelled])
        y_pred = probe.predict(rep_matrix[test] if test is not None else setting.query.obsm[REP_KEYS[rep]])
    else:
        options = METHOD_OPTIONS.get(method, {"strategy": _base_method(method)})
        model, y_pred, _ = train_and_predict(setting, labelled, seed, class_weight=class_weight_of(method),
                                             with_query=method in WITH_QUERY_METHODS,
                                             rep_key=REP_KEYS.get(rep, "X_encoder"), **options)
        extra = {
            "n_layers": model.n_layers_,
            "start": getattr(model.history_, "start", None),  # None: a logistic regression has no history
            **{k: model.metrics_[k] for k in ("val_loss", "val_balanced_loss", "val_macro_f1", "val_accuracy")},
        }
    return {
        "task": setting.name,
        "method": method if rep is None else f"{method}[{rep}]",
        "class_weight": str(class_weight_of(method)),
        "n_labelled": len(labelled),
        "seed": seed,
        "macro_f1": f1_score(y_true, y_pred, average="macro"),
        "accuracy": accuracy_score(y_true, y_pred),
        **extra,
        "seconds": time.perf_counter() - start,
    }


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    grouped = runs.groupby(["task", "n", "method"], sort=False)
    table = grouped.agg(
        macro_f1=("macro_f1", "mean"), macro_f1_std=("macro_f1", "std"),
        accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
        n_labelled=("n_labelled", "mean"), seconds=("seconds", "mean"), seeds=("seed", "nunique"),
    )
    return table.reset_index()


def claim_check(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task, n and frozen representation: REFINE against the better of GNN-from-scratch and the linear
    probe (each unweighted, class-balanced or ``_eff``, whichever ran and scored higher), and against the best of every
    baseline, with paired per-seed differences.

    ``below_by_more_than_noise``: the mean paired difference to the better of GNN and probe is below
    minus two standard errors (std of the per-seed differences / sqrt(seeds)); ``below_best_by_more_than_noise``
    the same against the best baseline. Only baselines that ran on every seed REFINE ran on take part (a partial
    run, such as scANVI's three seeds, would otherwise compare means over different seeds).
    """
    f1 = runs.pivot_table(index=["task", "n", "seed"], columns="method", values="macro_f1")
    rows = []
    for rep in sorted({m[len("refine["):-1] for m in f1.columns if m.startswith("refine[")}):
        refine = f"refine[{rep}]"
        gnn_or_probe = [f"{m}{w}{r}" for m, r in (("gnn", ""), ("linear_probe", f"[{rep}]")) for w in ("", "_bal", "_eff")]
        gnn_or_probe = [m for m in gnn_or_probe if m in f1]
        if not any(m.startswith("gnn") for m in gnn_or_probe) or not any(m.startswith("linear") for m in gnn_or_probe):
            continue
        baselines = [m for m in f1.columns if not m.startswith("refine") and ("[" not in m or m.endswith(f"[{rep}]"))]
        for (task, n), per_seed in f1.groupby(level=[0, 1], sort=False):
            if refine not in per_seed or per_seed[refine].isna().all():
                continue
            # paired comparisons: REFINE's seeds, and only the methods that ran on every one of them
            per_seed = per_seed[per_seed[refine].notna()]
            per_seed = per_seed.loc[:, per_seed.notna().all()]
            candidates = [m for m in gnn_or_probe if m in per_seed]
            if not candidates:
                continue
            means = per_seed.mean()
            reference = max(candidates, key=lambda m: means[m])
            best = max((m for m in baselines if m in per_seed), key=lambda m: means[m])
            diff = per_seed[refine] - per_seed[reference]
            se = standard_error(diff)
            to_best = per_seed[refine] - per_seed[best]
            best_se = standard_error(to_best)
            rows.append({
                "task": task, "n": n, "rep": rep, "refine": means[refine],
                "better_of_gnn_probe": reference, "its_f1": means[reference],
                "diff": diff.mean(), "diff_se": se,
                "below_by_more_than_noise": bool(diff.mean() < -2 * se) if np.isfinite(se) else None,
                "best_baseline": best, "best_baseline_f1": means[best],
                "diff_to_best_baseline": means[refine] - means[best], "diff_to_best_se": best_se,
                "below_best_by_more_than_noise": bool(to_best.mean() < -2 * best_se) if np.isfinite(best_se) else None,
                "seeds": len(diff),
            })
    return pd.DataFrame(rows)


def claim_markdown(claims: pd.DataFrame) -> list[str]:
    if claims.empty:
        return []
    lines = [
        "### The claim checked: REFINE vs the better of GNN-from-scratch and the linear probe, and vs every baseline",
        "",
        "Macro-F1; diff = REFINE minus the best of `gnn` and `linear_probe[rep]`, unweighted, `_bal` or `_eff` (mean of "
        "per-seed differences "
        "± standard error); **below** = lower by more than two standard errors. Last columns: the best of all "
        "baselines (the representation-free ones and those on the same representation), REFINE's margin over it "
        "(paired standard error) and whether it is below by more than two standard errors.",
        "",
        "| task | n | rep | REFINE | better of GNN / probe | diff ± SE | below? | best baseline | REFINE - best ± SE "
        "| below best? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in claims.itertuples():
        below = {True: "**below**", False: "no", None: "-"}[r.below_by_more_than_noise]
        lines.append(
            f"| {r.task} | {r.n} | {r.rep} | {r.refine:.3f} | {r.better_of_gnn_probe} {r.its_f1:.3f} | "
            f"{r.diff:+.3f} ± {r.diff_se:.3f} | {below} | {r.best_baseline} {r.best_baseline_f1:.3f} | "
            f"{r.diff_to_best_baseline:+.3f} ± {r.diff_to_best_se:.3f} | "
            f"{ {True: '**below**', False: 'no', None: '-'}[r.below_best_by_more_than_noise]} |"
        )
    return [*lines, ""]


def markdown(table: pd.DataFrame, runs: pd.DataFrame, header: str) -> str:
    lines = [header, "", *claim_markdown(claim_check(runs))]
    for task, rows in table.groupby("task", sort=False):
        pivot_f1 = rows.pivot(index="method", columns="n", values="macro_f1")
        pivot_sd = rows.pivot(index="method", columns="n", values="macro_f1_std")
        pivot_acc = rows.pivot(index="method", columns="n", values="accuracy")
        order = list(pd.unique(rows["method"]))
        lines += [f"### {task}: macro-F1 (mean ± std over seeds) / accuracy", ""]
        cols = list(pivot_f1.columns)
        lines.append("| method | " + " | ".join(f"n={c}" for c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        best = {c: pivot_f1[c].max() for c in cols}
        for method in order:
            cells = []
            for c in cols:
                f1, sd, acc = pivot_f1.loc[method, c], pivot_sd.loc[method, c], pivot_acc.loc[method, c]
                if not np.isfinite(f1):  # not run at this n
                    cells.append("-")
                    continue
                text = f"{f1:.3f} ± {sd:.3f} / {acc:.3f}"
                cells.append(f"**{text}**" if np.isclose(f1, best[c]) else text)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(pd.unique(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = table[table["task"] == task]
        for method, sub in rows.groupby("method", sort=False):
            style = "-" if method.startswith("refine") else "--"
            ax.errorbar(sub["n"], sub["macro_f1"], yerr=sub["macro_f1_std"], label=method, ls=style, marker="o",
                        ms=3, capsize=2, lw=2.2 if method == "refine[encoder]" else 1.0)
        ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel("labelled cells")
        ax.set_ylabel("macro-F1 (test)")
    axes[0][-1].legend(fontsize="x-small", frameon=False, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tasks", nargs="+", default=None, choices=TASKS, help="subset of task names")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="methods to run (default: every baseline, unweighted, '_eff' and '_bal', and "
                             f"REFINE); also {', '.join(OPTIONAL_METHODS)} (scanvi needs scvi-tools)")
    parser.add_argument("--reps", nargs="+", default=None, help="subset of frozen representations (encoder, pca, scgpt)")
    parser.add_argument("--scgpt", default=os.environ.get("SPATIAL_REFINE_SCGPT_DIR"), help="scGPT checkpoint folder")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=100, one seed")
    parser.add_argument("--out", default=str(RESULTS / "spatial_annotation"), help="output prefix")
    parser.add_argument("--merge", nargs="+", default=None, metavar="RUNS_CSV",
                        help="no training: rebuild the report from -runs.csv files of earlier (e.g. parallel) runs")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods) - {*DEFAULT_METHODS, *OPTIONAL_METHODS})
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {[*DEFAULT_METHODS, *OPTIONAL_METHODS]}")
    if args.quick:
        args.n, args.seeds = [100], [0]
    out = Path(args.out)
    if args.merge:
        runs = pd.concat([pd.read_csv(path) for path in args.merge], ignore_index=True)
        header = f"## Spatial annotation benchmark\n\nMerged from {', '.join(Path(p).name for p in args.merge)}."
        write_outputs(runs, out, header)
        return
    _pin_torch_threads()
    settings, reps = load_settings(args.scgpt, args.tasks)
    if args.reps:
        reps = [r for r in reps if r in args.reps]
    out.parent.mkdir(parents=True, exist_ok=True)
    runs_path = out.with_name(out.name + "-runs.csv")
    records = []
    start = time.perf_counter()
    for setting in settings:
        for n, seed, labelled in labelled_samples(setting, args.n, args.seeds):
            for method in args.methods:
                for rep in reps if method in REP_METHODS else [None]:
                    _pin_torch_threads()
                    record = run_one(setting, method, rep, labelled, seed)
                    record["n"] = n
                    records.append(record)
                    print(f"{record['task']:18s} n={n:5d} seed={seed} {record['method']:24s} "
                          f"F1 {record['macro_f1']:.3f} acc {record['accuracy']:.3f} "
                          f"L={record['n_layers']} start={record['start']} {record['seconds']:.1f}s", flush=True)
            pd.DataFrame(records).to_csv(runs_path, index=False)
    runs = pd.DataFrame(records)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    header = (
        f"## Spatial annotation benchmark\n\nRun: `python benchmarks/spatial_annotation.py {' '.join(argv or [])}`"
        f" on {machine} (load average {os.getloadavg()[0]:.1f} at the end), {time.perf_counter() - start:.0f} s, "
        f"torch threads {torch.get_num_threads()}. Test = a new slice (seqFISH, MERFISH) or the unlabelled cells "
        "(osmFISH). Bold: best mean macro-F1 per column."
    )
    write_outputs(runs, out, header)


def write_outputs(runs: pd.DataFrame, out: Path, header: str) -> None:
    """The summary CSV, the markdown tables and the plot from per-run records."""
    table = summarise(runs)
    table.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".md").write_text(markdown(table, runs, header) + "\n")
    plot(table, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
