"""Will a frozen representation help on *your* data? A learning-curve diagnostic.

The theory ("features are fate") says a frozen representation helps when the target lies in the span of
its features, and hurts once enough target data lets a scratch model beat the irreducible error of the
frozen features. This module measures both sides on real data with learning curves:

(a) a **linear probe** (logistic regression) on the frozen representation: its plateau as ``n`` grows is the
    floor the frozen features can express (the analogue of ``sin^2(theta)``);
(b) a **scratch** model on the raw input (expression; logistic regression or a small MLP);
(c) the **REFINE-style** combination ``[raw, representation]`` with one linear model: what a residual path
    adds on top of the frozen features.

Each model is fitted on stratified subsamples of increasing size (several seeds, a held-out stratified test
set per seed) and scored with macro-F1 and accuracy. The verdict compares the curves at the smallest and
largest ``n`` and their saturating fits ``s(n) = a - b n^{-c}``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = ["MODELS", "TransferabilityReport", "fit_saturating_curve", "transferability_diagnostic"]

#: Models of the diagnostic, in report order.
MODELS = ("probe", "scratch", "refine")
_METRICS = ("f1_macro", "accuracy")
_VERDICT_MESSAGES = {
    "helps": "transfer expected to help",
    "helps_small_n": "transfer helps only with few labels; negative transfer likely beyond: use REFINE's residual path",
    "negative": "negative transfer likely: use REFINE's residual path",
    "neutral": "frozen features neither help nor hurt within tolerance",
}


@dataclass
class TransferabilityReport:
    """Result of :func:`transferability_diagnostic`.

    Attributes
    ----------
    verdict
        ``"helps"``, ``"helps_small_n"``, ``"negative"`` or ``"neutral"``.
    message
        Human-readable verdict (e.g. ``"transfer expected to help"``), with the residual-path note.
    residual_path_needed
        Whether REFINE's residual path is expected to matter: the frozen features lose to scratch at some
        ``n``, or the ``[raw, representation]`` model beats the probe by more than ``tol``.
    summary
        Scalars: ``probe_plateau``, ``probe_ceiling``, ``scratch_plateau``, ``scratch_ceiling``,
        ``refine_plateau``, ``gap`` (probe minus scratch at the largest ``n``), ``gap_ceiling`` (between
        the fitted asymptotes), ``small_n_gain`` (probe minus scratch at the smallest ``n``),
        ``residual_gain`` (REFINE-style minus probe at the largest ``n``), ``crossover_n`` (where scratch
        overtakes the probe within the curve; ``nan`` if it does not), ``projected_crossover_n`` (where
        the fitted curves cross beyond the largest ``n``, up to 100x; a hint, not used by the verdict),
        ``chance``, cell and class counts.
    curves
        Per ``(model, n_train)``: mean and standard error over seeds of each metric.
    table
        Per ``(model, n_train, seed)`` scores.
    params
        The settings used.
    """

    verdict: str
    message: str
    residual_path_needed: bool
    summary: dict[str, float]
    curves: pd.DataFrame
    table: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"TransferabilityReport(verdict={self.verdict!r}, {self.params.get('metric', 'f1_macro')}: "
            f"probe {s['probe_plateau']:.3f} (ceiling {s['probe_ceiling']:.3f}), "
            f"scratch {s['scratch_plateau']:.3f}, refine {s['refine_plateau']:.3f}; {self.message})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dictionary (HDF5-writable): what :func:`~spatial_refine.tl.transferability` stores."""
        curves = {c: self.curves[c].to_numpy() for c in self.curves.columns}
        table = {c: self.table[c].to_numpy() for c in self.table.columns}
        for d in (curves, table):
            d["model"] = d["model"].astype(str)
        return {
            "verdict": self.verdict,
            "message": self.message,
            "residual_path_needed": bool(self.residual_path_needed),
            "summary": {k: float(v) for k, v in self.summary.items()},
            "curves": curves,
            "table": table,
            "params": _plain(self.params),
        }

    def plot(self, metric: str | None = None, ax: Any = None) -> Any:
        """Learning curves (mean +- s.e.m.) of the three models; returns the matplotlib axes."""
        from .plot import plot_learning_curves

        return plot_learning_curves(self, metric=metric, ax=ax)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            out[k] = "None"
        elif isinstance(v, list | tuple | np.ndarray):
            out[k] = np.asarray(v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------------------
# Validation and preprocessing
# --------------------------------------------------------------------------------------------------------
def _as_matrix(x: Any, name: str, n_components: int | None, random_state: int) -> np.ndarray:
    """Dense finite float matrix; optionally reduced to ``n_components`` by (truncated) SVD."""
    import scipy.sparse as sp

    if sp.issparse(x):
        data = x.data
        if not np.all(np.isfinite(data)):
            raise ValueError(f"`{name}` contains NaN or infinite values; clean or impute them first.")
        if x.ndim != 2:
            raise ValueError(f"`{name}` must be 2-D, got shape {x.shape}.")
        if n_components is not None and x.shape[1] > n_components:
            from sklearn.decomposition import TruncatedSVD

            return TruncatedSVD(n_components, random_state=random_state).fit_transform(x.astype(np.float64))
        return np.asarray(x.toarray(), dtype=np.float64)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (cells x features), got shape {arr.shape}.")
    if arr.shape[1] == 0:
        raise ValueError(f"`{name}` has no features.")
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(
            f"`{name}` contains NaN or infinite values in {bad} rows; clean or impute them first."
        )
    if n_components is not None and arr.shape[1] > n_components:
        from sklearn.decomposition import PCA

        return PCA(n_components, random_state=random_state).fit_transform(arr)
    return arr


def _labels(labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Labels as strings with a mask of labelled cells (NaN / None are unlabelled)."""
    lab = pd.Series(np.asarray(labels, dtype=object) if not isinstance(labels, pd.Series) else labels)
    if lab.ndim != 1:
        raise ValueError("`labels` must be one-dimensional.")
    mask = ~lab.isna().to_numpy()
    return lab.astype(str).to_numpy(), mask


def _stratified_subsample(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices with class proportions of ``y`` (largest remainder), at least one per class."""
    classes, counts = np.unique(y, return_counts=True)
    if size >= len(y):
        return rng.permutation(len(y))
    quota = counts / counts.sum() * size
    alloc = np.maximum(np.floor(quota).astype(int), 1)
    alloc = np.minimum(alloc, counts)
    while alloc.sum() < size:
        room = alloc < counts
        gap = np.where(room, quota - alloc, -np.inf)
        alloc[int(np.argmax(gap))] += 1
    while alloc.sum() > size:
        over = np.where(alloc > 1, alloc - quota, -np.inf)
        alloc[int(np.argmax(over))] -= 1
    idx = [rng.choice(np.flatnonzero(y == c), a, replace=False) for c, a in zip(classes, alloc)]
    return rng.permutation(np.concatenate(idx))


def _default_sizes(n_pool: int, n_classes: int, n_sizes: int) -> np.ndarray:
    lo = min(max(2 * n_classes, 20), n_pool)
    sizes = np.unique(np.round(np.geomspace(lo, n_pool, n_sizes)).astype(int))
    return sizes


# --------------------------------------------------------------------------------------------------------
# Models and curves
# --------------------------------------------------------------------------------------------------------
def _make_model(kind: str, c_reg: float, max_iter: int, random_state: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        clf = LogisticRegression(C=c_reg, max_iter=max_iter, tol=1e-3)
    elif kind == "mlp":
        clf = MLPClassifier(
            hidden_layer_sizes=(128,),
            alpha=1e-3,
            max_iter=max_iter,
            early_stopping=False,
            random_state=random_state,
        )
    else:
        raise ValueError(f"Unknown model {kind!r}; use 'logreg' or 'mlp'.")
    return make_pipeline(StandardScaler(), clf)


def fit_saturating_curve(n: ArrayLike, score: ArrayLike) -> tuple[float, float, float]:
    """Fit ``score(n) = a - b n^{-c}`` (``0 <= a <= 1``, ``b >= 0``, ``0.05 <= c <= 3``); returns ``(a, b, c)``.

    Falls back to ``(score at the largest n, 0, nan)`` with fewer than four points or if the fit fails.
    """
    n_arr = np.asarray(n, dtype=np.float64)
    s_arr = np.asarray(score, dtype=np.float64)
    last = float(s_arr[np.argmax(n_arr)])
    if n_arr.size < 4:
        return last, 0.0, float("nan")
    from scipy.optimize import curve_fit

    def f(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * (x / n_arr.max()) ** (-c)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, b, c), _ = curve_fit(
                f,
                n_arr,
                s_arr,
                p0=(min(last + 0.01, 1.0), 0.01, 0.5),
                bounds=([0, 0, 0.05], [1, 10, 3]),
                maxfev=5000,
            )
    except (RuntimeError, ValueError):
        return last, 0.0, float("nan")
    return float(a), float(b) * n_arr.max() ** float(c), float(c)


def _run_curves(
    splitter: Any,
    inputs: dict[str, np.ndarray],
    lab: np.ndarray,
    classes: np.ndarray,
    sizes: np.ndarray,
    rng: np.random.Generator,
    scratch_model: str,
    c_reg: float,
    max_iter: int,
    random_state: int,
) -> list[dict[str, Any]]:
    """Fit every model on stratified subsamples of each seed's training pool; score on its held-out test set."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, f1_score

    rows = []
    for seed, (pool, test) in enumerate(splitter.split(inputs["scratch"], lab)):
        for n in sizes:
            sub = pool[_stratified_subsample(lab[pool], int(n), rng)]
            for model in MODELS:
                kind = scratch_model if model == "scratch" else "logreg"
                est = _make_model(kind, c_reg, max_iter, random_state + seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    est.fit(inputs[model][sub], lab[sub])
                pred = est.predict(inputs[model][test])
                rows.append(
                    {
                        "model": model,
                        "n_train": int(n),
                        "seed": seed,
                        "f1_macro": f1_score(
                            lab[test], pred, average="macro", labels=classes, zero_division=0
                        ),
                        "accuracy": accuracy_score(lab[test], pred),
                    }
                )
    return rows


def _crossover(sizes: np.ndarray, diff: np.ndarray) -> float:
    """First ``n`` (log-interpolated) where ``diff = probe - scratch`` turns from positive to negative."""
    for i in range(1, len(sizes)):
        if diff[i - 1] > 0 >= diff[i]:
            t = diff[i - 1] / (diff[i - 1] - diff[i])
            return float(np.exp(np.log(sizes[i - 1]) + t * (np.log(sizes[i]) - np.log(sizes[i - 1]))))
    return float("nan")


def transferability_diagnostic(
    rep: ArrayLike,
    raw: ArrayLike,
    labels: ArrayLike,
    *,
    train_sizes: ArrayLike | None = None,
    n_sizes: int = 6,
    n_seeds: int = 3,
    test_size: float = 0.25,
    metric: str = "f1_macro",
    scratch_model: str = "logreg",
    tol: float = 0.02,
    raw_n_components: int | None = 100,
    rep_n_components: int | None = None,
    min_cells_per_class: int = 5,
    C: float = 1.0,
    max_iter: int = 200,
    n_threads: int | None = 1,
    random_state: int = 0,
) -> TransferabilityReport:
    """Estimate whether a frozen representation will help on labelled data, and where REFINE's residual path is needed.

    Parameters
    ----------
    rep
        Frozen representation, ``(n_cells, p)`` (e.g. scGPT embeddings).
    raw
        Raw input of the scratch model, ``(n_cells, g)``, dense or scipy-sparse (e.g. log-normalised
        expression).
    labels
        Class labels, length ``n_cells``; NaN / None mark unlabelled cells, which are ignored.
    train_sizes
        Training-set sizes of the learning curve; default ``n_sizes`` sizes geometrically spaced from
        ``max(2 * n_classes, 20)`` to the whole training pool.
    n_sizes
        Number of default sizes.
    n_seeds
        Repetitions (each with its own stratified train/test split and subsamples).
    test_size
        Held-out fraction (stratified).
    metric
        ``"f1_macro"`` or ``"accuracy"``: the metric used for the verdict (both are reported).
    scratch_model
        ``"logreg"`` (logistic regression) or ``"mlp"`` (one hidden layer of 128 units).
    tol
        Score differences below ``tol`` count as ties.
    raw_n_components, rep_n_components
        Reduce inputs with more features than this by PCA / truncated SVD (fitted on all cells, without
        labels); ``None`` keeps them as they are.
    min_cells_per_class
        Classes with fewer labelled cells raise a ``ValueError``.
    C, max_iter
        Inverse regularisation and iteration cap of the logistic regressions.
    n_threads
        BLAS threads during the fits (``None``: library default). One thread is usually fastest for these
        small problems, especially on shared machines.
    random_state
        Seed for splits, subsamples and models.

    Returns
    -------
    :class:`TransferabilityReport`

    Raises
    ------
    ValueError
        Non-finite inputs, mismatched lengths, a single class, too few cells per class, bad sizes.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        return _diagnostic(
            rep,
            raw,
            labels,
            train_sizes=train_sizes,
            n_sizes=n_sizes,
            n_seeds=n_seeds,
            test_size=test_size,
            metric=metric,
            scratch_model=scratch_model,
            tol=tol,
            raw_n_components=raw_n_components,
            rep_n_components=rep_n_components,
            min_cells_per_class=min_cells_per_class,
            C=C,
            max_iter=max_iter,
            n_threads=n_threads,
            random_state=random_state,
        )


def _diagnostic(
    rep: ArrayLike,
    raw: ArrayLike,
    labels: ArrayLike,
    *,
    train_sizes: ArrayLike | None,
    n_sizes: int,
    n_seeds: int,
    test_size: float,
    metric: str,
    scratch_model: str,
    tol: float,
    raw_n_components: int | None,
    rep_n_components: int | None,
    min_cells_per_class: int,
    C: float,
    max_iter: int,
    n_threads: int | None,
    random_state: int,
) -> TransferabilityReport:
    t0 = time.perf_counter()
    if metric not in _METRICS:
        raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
    if not 0 < test_size < 1:
        raise ValueError(f"`test_size` must be in (0, 1), got {test_size!r}.")
    if n_seeds < 1:
        raise ValueError(f"`n_seeds` must be >= 1, got {n_seeds!r}.")
    lab, labelled = _labels(labels)
    n_rep = rep.shape[0] if hasattr(rep, "shape") else len(rep)  # type: ignore[arg-type]
    n_raw = raw.shape[0] if hasattr(raw, "shape") else len(raw)  # type: ignore[arg-type]
    if not (n_rep == n_raw == len(lab)):
        raise ValueError(
            f"Lengths differ: rep has {n_rep} rows, raw has {n_raw} rows, labels has {len(lab)} entries; "
            "they must describe the same cells in the same order."
        )
    rep_m = _as_matrix(rep, "rep", rep_n_components, random_state)
    raw_m = _as_matrix(raw, "raw", raw_n_components, random_state)
    n_unlabelled = int((~labelled).sum())
    rep_m, raw_m, lab = rep_m[labelled], raw_m[labelled], lab[labelled]
    classes, counts = np.unique(lab, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"Need at least two classes, found {len(classes)} ({list(classes)}).")
    rare = classes[counts < min_cells_per_class]
    if len(rare):
        raise ValueError(
            f"{len(rare)} class(es) have fewer than {min_cells_per_class} labelled cells: "
            f"{dict(zip(rare.tolist(), counts[counts < min_cells_per_class].tolist()))}. "
            "Remove or merge them, or lower `min_cells_per_class`."
        )
    n_cells = len(lab)
    n_test = int(np.ceil(test_size * n_cells))
    if n_test < len(classes) or n_cells - n_test < len(classes):
        raise ValueError(
            f"Too few labelled cells ({n_cells}) for {len(classes)} classes with test_size={test_size}."
        )

    from sklearn.model_selection import StratifiedShuffleSplit

    splitter = StratifiedShuffleSplit(n_splits=n_seeds, test_size=n_test, random_state=random_state)
    n_pool = n_cells - n_test
    if train_sizes is None:
        if isinstance(n_sizes, bool) or not isinstance(n_sizes, (int, np.integer)) or n_sizes < 2:
            raise ValueError(f"`n_sizes` must be an integer >= 2 (points of the learning curve), got {n_sizes!r}.")
        sizes = _default_sizes(n_pool, len(classes), n_sizes)
    else:
        requested = np.asarray(train_sizes)
        if requested.ndim != 1 or requested.size == 0 or not np.all(np.isfinite(requested)) or np.any(
                requested != np.round(requested)):
            raise ValueError(f"`train_sizes` must be a non-empty list of whole numbers of cells, got {train_sizes!r}.")
        sizes = np.unique(requested.astype(int))
        if sizes.min() < len(classes) or sizes.max() > n_pool:
            raise ValueError(
                f"`train_sizes` must lie in [{len(classes)}, {n_pool}] (number of classes, training pool size)."
            )
    inputs = {"probe": rep_m, "scratch": raw_m, "refine": np.hstack([raw_m, rep_m])}
    rng = np.random.default_rng(random_state)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        rows = _run_curves(
            splitter, inputs, lab, classes, sizes, rng, scratch_model, C, max_iter, random_state
        )
    table = pd.DataFrame(rows)
    grouped = table.groupby(["model", "n_train"], sort=True)
    curves = grouped[list(_METRICS)].mean()
    sems = grouped[list(_METRICS)].sem(ddof=1) if n_seeds > 1 else curves * np.nan
    curves = curves.join(sems.add_suffix("_sem")).reset_index()

    def curve(model: str) -> tuple[np.ndarray, np.ndarray]:
        c = curves[curves["model"] == model].sort_values("n_train")
        return c["n_train"].to_numpy(), c[metric].to_numpy()

    n_p, s_p = curve("probe")
    _, s_s = curve("scratch")
    _, s_r = curve("refine")
    fit_p = fit_saturating_curve(n_p, s_p)
    fit_s = fit_saturating_curve(n_p, s_s)
    probe_ceiling, scratch_ceiling = max(fit_p[0], s_p[-1]), max(fit_s[0], s_s[-1])
    diff = s_p - s_s
    summary = {
        "probe_plateau": float(s_p[-1]),
        "probe_ceiling": float(probe_ceiling),
        "scratch_plateau": float(s_s[-1]),
        "scratch_ceiling": float(scratch_ceiling),
        "refine_plateau": float(s_r[-1]),
        "gap": float(diff[-1]),
        "gap_ceiling": float(probe_ceiling - scratch_ceiling),
        "small_n_gain": float(diff[0]),
        "residual_gain": float(s_r[-1] - s_p[-1]),
        "crossover_n": _crossover(n_p, diff),
        "projected_crossover_n": _projected_crossover(n_p[-1], fit_p, fit_s)
        if diff[-1] > 0
        else float("nan"),
        "chance": float(1.0 / len(classes)) if metric == "accuracy" else float("nan"),
        "n_cells": float(n_cells),
        "n_unlabelled": float(n_unlabelled),
        "n_classes": float(len(classes)),
        "runtime_s": float(time.perf_counter() - t0),
    }
    verdict = _verdict(summary, tol)
    residual_needed = (verdict in ("negative", "helps_small_n") or summary["residual_gain"] > tol
                       or bool(np.any(diff < -tol)))  # the frozen features lose to scratch at some measured n
    message = _VERDICT_MESSAGES[verdict]
    if verdict == "helps_small_n" and np.isfinite(summary["crossover_n"]):
        message += f" (scratch overtakes the frozen features near n = {summary['crossover_n']:.0f} cells)"
    if verdict == "helps" and np.isfinite(summary["crossover_n"]):
        message += (
            f" (but the measured curves cross near n = {summary['crossover_n']:.0f} cells: scratch was level or ahead"
            f" there; at the largest n, {int(n_p[-1])}, "
            + (f"the frozen features lead by {summary['gap']:+.3f})" if summary["gap"] > 0
               else f"the two are level within tol (probe minus scratch {summary['gap']:+.3f}))")
        )
    elif verdict == "helps" and np.isfinite(summary["projected_crossover_n"]):
        message += (
            f" (extrapolated curves suggest scratch may catch up near n = {summary['projected_crossover_n']:.0f}"
            " cells)"
        )
    if summary["residual_gain"] > tol:
        message += (
            f"; the [raw, representation] model adds {summary['residual_gain']:+.3f} {metric} over the probe: "
            "REFINE's residual path carries signal the frozen features miss"
        )
    params = {
        "train_sizes": sizes.tolist(),
        "n_seeds": n_seeds,
        "test_size": test_size,
        "metric": metric,
        "scratch_model": scratch_model,
        "tol": tol,
        "raw_n_components": raw_n_components,
        "rep_n_components": rep_n_components,
        "min_cells_per_class": min_cells_per_class,
        "C": C,
        "max_iter": max_iter,
        "n_threads": n_threads,
        "random_state": random_state,
    }
    return TransferabilityReport(verdict, message, residual_needed, summary, curves, table, params)


def _verdict(s: dict[str, float], tol: float) -> str:
    """Decision rule on the observed curves (see :class:`TransferabilityReport`)."""
    if s["gap"] < -tol:  # scratch wins with the most labels available
        return "helps_small_n" if s["small_n_gain"] > tol else "negative"
    if s["gap"] > tol or s["small_n_gain"] > tol:
        return "helps"
    return "neutral"


def _projected_crossover(
    n_max: float, fit_probe: tuple[float, float, float], fit_scratch: tuple[float, float, float]
) -> float:
    """Smallest ``n`` in ``(n_max, 100 n_max]`` where the fitted scratch curve reaches the fitted probe curve."""
    if not (np.isfinite(fit_probe[2]) and np.isfinite(fit_scratch[2])):
        return float("nan")
    grid = np.geomspace(n_max, 100 * n_max, 200)
    probe = fit_probe[0] - fit_probe[1] * grid ** (-fit_probe[2])
    scratch = fit_scratch[0] - fit_scratch[1] * grid ** (-fit_scratch[2])
    if scratch[0] >= probe[0]:  # the fitted curves have met already: nothing left to extrapolate
        return float("nan")
    hit = np.flatnonzero(scratch >= probe)
    return float(grid[hit[0]]) if hit.size else float("nan")
