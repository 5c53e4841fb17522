"""The AnnData model class: REFINE (frozen representation + spatial GNN residual encoder) for cell
annotation, and every baseline through the same API.

A thin layer: it reads the expression, the frozen representation (``obsm``) and the spatial graph
(``obsp``) from AnnData, hands arrays to the generic core (:mod:`spatial_refine.refine`), and writes
results back under documented keys.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from threadpoolctl import threadpool_limits

from ._constants import GRAPH_KEY, REP_KEY
from .encoders import CONV_TYPES, GNNEncoder, MLPEncoder, SIGNEncoder
from .refine import (
    TensorBatches,
    TrainConfig,
    build_strategy,
    class_weights,
    fit,
    greedy_ensemble_weights,
    predict_outputs,
    seeded,
)
from .refine._validation import is_integer as _is_integer
from .refine._validation import stratified_split as _stratified_split
from .refine.ensemble import log_loss
from .refine.estimator import _dict_class_weights
from .refine.graph import GraphBatches
from .refine.neighbors import neighbor_aggregate, smooth_probabilities, smooth_probabilities_grid

__all__ = ["ENCODERS", "STRATEGIES", "RefineAnnotator"]

logger = logging.getLogger(__name__)

#: name -> (core strategy, residual encoder); ``None`` core strategy means a scikit-learn model.
STRATEGIES: dict[str, tuple[str | None, str | None]] = {
    "refine": ("refine", "gnn"),
    "gnn": ("notrans", "gnn"),
    "mlp": ("notrans", "mlp"),
    "linear_probe": ("linear_probe", None),
    "adapter": ("adapter", None),
    "refine_mlp": ("refine", "mlp"),
    "logreg": (None, None),
    "neighbor_logreg": (None, None),
}
_USES_REP = {"refine", "linear_probe", "adapter", "refine_mlp"}
_USES_GRAPH = {"refine", "gnn", "neighbor_logreg"}
#: graph residual encoders: SIGN over precomputed hop aggregates, or torch-geometric message passing
ENCODERS = ("sign", *CONV_TYPES)
#: saved-model format: 2 stores a list of member models (1: a single model, still read)
_FORMAT_VERSION = 2
FULL_BATCH_MAX_CELLS = 100_000
#: cells per chunk when a logistic regression predicts (bounds the copies of its input rows)
LINEAR_CHUNK_CELLS = 65_536
#: width of the residual network's layers when ``hidden="auto"``
AUTO_HIDDEN = 64
#: rounds of greedy ensemble selection for ``hidden="auto"`` (weights are multiples of 1 / rounds)
ENSEMBLE_ROUNDS = 10
#: what a logistic-regression member of REFINE reads: the hop features and the frozen representation
#: (REFINE's linear head), or one block alone (its limits: the residual from scratch, the linear probe)
LINEAR_INPUTS = ("all", "hops", "rep")
#: labelled seed cells per training minibatch when ``batch_size="auto"`` picks minibatches
MINIBATCH_SEEDS = 1024
#: seed cells per batch when evaluating or predicting with minibatches: without gradients a batch costs
#: far less memory, and larger batches share their k-hop halo (at 1M cells the subgraph of 1,024 seeds
#: has about 2x their number of nodes, that of 16,384 about 1.4x)
INFERENCE_MIN_SEEDS = 16_384
# depth_folds="auto": logistic regressions choose their depth by this many folds of cross-validation when there
# are at most CV_DEPTH_MAX_LABELLED labelled cells (a 20% split of a few hundred cells is a noisy judge, and the
# fits are cheap: benchmarks/results/depth_folds_cost.md); above, on the validation split (thousands of cells
# judge well, and the linear fits grow with the labelled cells)
CV_DEPTH_FOLDS = 5
CV_DEPTH_MAX_LABELLED = 10_000
#: True: with cross-validation on (``depth_folds``), REFINE's ensemble selection weighs its three logistic
#: regressions among themselves on their out-of-fold probabilities of every labelled cell, then that blend
#: against the network on the validation cells (two stages), instead of all four on the validation cells. Off:
#: on the spatial benchmark it moved REFINE by +0.0005 macro-F1 on average (higher in 9 of 30 settings, lower
#: in 7; benchmarks/results/diagnose_linear_selection.md), for 5 more logistic-regression fits per regression
#: whose depth is not cross-validated anyway (the representation-only one; all three with a fixed n_layers)
CV_LINEAR_SELECTION = False
#: relative scales of the frozen representation's columns tried by REFINE's linear head (the logistic regression
#: on the hop features and the representation): the standardised representation columns are multiplied by ``s``
#: before the fit, so the L2 penalty on their weights is ``1 / s**2`` times that on the hop features' (``s > 1``
#: leans on the frozen model, ``s < 1`` on the residual). The scale is chosen after the depth (at ``s = 1``), by
#: the same cross-validation or split, and the head is refitted at it; ``(1.0,)``: the plain logistic regression
#: (the default before 2026-12-04). On the spatial benchmark the choice moved REFINE by +0.0003 macro-F1 on seeds
#: 0-4 and +0.0008 on seeds 5-9 (higher by more than 0.002 in 11 of 60 settings, lower in 5), and REFINE no longer
#: falls below the better of GNN and probe by more than two SE on seeds 5-9 (before: 2 of 30);
#: ``benchmarks/results/diagnose_rep_scale.md``
REP_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
#: inverse L2 penalties ``C`` (scikit-learn's) tried by REFINE's linear residual (its linear head and that head on
#: either block) once its depth and scale are chosen, when they are chosen by cross-validation (``depth_folds``):
#: the one whose out-of-fold predictions have the highest macro-F1 (ties: the larger ``C``) is refitted; without
#: cross-validation ``C = 1``. Macro-F1, not the log-loss: a stronger penalty makes the probabilities less sure
#: (higher log-loss, which kept ``C = 1`` in half the settings of ``diagnose_logreg_penalty.md``) while ranking rare
#: classes better (higher macro-F1, what annotation is judged by); with :data:`LINEAR_TEMPERATURE`. On the spatial
#: benchmark the two raised REFINE's macro-F1 by +0.0036 (seeds 0-4) and +0.0043 (seeds 5-9) on average over 30
#: settings (higher by more than 0.002 in 17 and 16, lower in 4 and 5), +0.0047 / +0.0065 on the cell types and
#: +0.0007 / -0.0017 on osmFISH's regions (``benchmarks/results/diagnose_linear_penalty.md``), for 1.13-1.44x
#: REFINE's train time with 1,000-10,000 labelled cells (``linear_penalty_cost.md``). ``(1.0,)``: scikit-learn's
#: default (REFINE's before 2026-12-04); the baselines ``logreg`` and ``neighbor_logreg`` keep it, as their users
#: write them
LINEAR_CS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
#: whether the linear residual's logits are multiplied by the factor that minimises the log-loss of its
#: out-of-fold probabilities (temperature scaling, Guo et al. 2017), when it is chosen by cross-validation: the
#: ranking of the classes (its macro-F1) is unchanged, its probabilities are as sure as they should be, so that
#: ensemble selection (on the log-loss) weighs a strongly penalised member by its predictions, not its modesty.
#: Apart, on seeds 5-9 of the spatial benchmark: the temperature alone (``C = 1``) +0.0007 macro-F1 on average, the
#: penalty's choice alone -0.0045 (8 cell-type settings), both +0.0043
#: (``benchmarks/results/diagnose_linear_penalty_ablations.md``)
LINEAR_TEMPERATURE = True
#: ``train(self_training="auto")``, REFINE's default: the fraction of each predicted class's cells of the new
#: slices (those without a labelled cell) that self-training pseudo-labels. With every unlabelled cell a candidate,
#: self-training raised REFINE's macro-F1 on the spatial benchmark's new slices (seqFISH, MERFISH; seeds 5-9) in
#: each of 14 settings but not within the labelled slice (osmFISH: -0.013 to +0.011 by setting), so "auto" leaves
#: the labelled slices' cells alone. With "auto", REFINE rose by +0.0094 / +0.0091 macro-F1 on the new slices on
#: seeds 0-4 / 5-9 (higher in 14 / 12 of 14 settings, lower in none; ``benchmarks/results/diagnose_self_training.md``)
SELF_TRAINING_FRACTION = 0.5
#: at most this many pseudo-labelled cells (self-training), each predicted class keeping its share: the refit's
#: cost stays bounded on large data
SELF_TRAINING_MAX_CELLS = 20_000
#: ``train(smoothing="auto")``, REFINE's default: the strengths ``alpha`` of the smoothing of the predicted
#: probabilities over the spatial graph tried on the validation cells (0: none;
#: :func:`~spatial_refine.refine.neighbors.smooth_probabilities`).
#: On the spatial benchmark it raised REFINE on osmFISH's anatomical regions in every setting of both seed sets
#: (+0.010 to +0.023 macro-F1 at 100-1,000 labels, +0.002 at 3,000) and chose 0 in 215 of 220 cell-type fits (the
#: others moved by under +0.003); ``benchmarks/results/diagnose_smoothing.md``
SMOOTHING_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)
#: propagation steps of the smoothing (hops over which a cell's prediction reaches others)
SMOOTHING_STEPS = 10
#: the strategies whose ``train(smoothing="auto")`` chooses a smoothing strength: REFINE's pipeline; the baselines
#: train as their users write them (a diagnostic may add them to measure what smoothing gives them)
SMOOTHING_AUTO_STRATEGIES: tuple[str, ...] = ("refine",)
#: ``class_weight="effective"``: beta of the inverse effective number of a class's labelled cells (Cui et al. 2019)
EFFECTIVE_NUMBER_BETA = 0.99
# BLAS threads while scikit-learn fits a logistic regression (None: no limit). numpy and scipy each bring their
# own OpenBLAS, and L-BFGS alternates between them every step: with two threads per pool they contend. Unlimited,
# training took 12.4x as long for neighbor_logreg and 4.9x for REFINE at 500 labelled cells, 1.7x at 10,000
# (benchmarks/results/blas_threads.md); one thread also makes the fit independent of the machine's thread count
LINEAR_FIT_BLAS_THREADS: int | None = 1


@dataclass(frozen=True)
class _Member:
    """One fitted model of an annotator: residual width (``None``: the linear residual), hops of context,
    weights (a torch module, or ``{"weight", "bias"}`` arrays for a logistic regression), the input blocks a
    logistic regression reads (:data:`LINEAR_INPUTS`) and its weight in the ensemble."""

    hidden: int | None
    n_layers: int
    model: Any
    inputs: str = "all"
    weight: float = 1.0

    @property
    def name(self) -> str:
        """``"64"`` (network width), ``"linear"`` (REFINE's linear head), ``"linear[hops]"`` / ``"linear[rep]"``."""
        if self.hidden is not None:
            return str(self.hidden)
        return "linear" if self.inputs == "all" else f"linear[{self.inputs}]"


@dataclass(frozen=True)
class _Fit:
    """A candidate fitted on the training split: its validation loss and probabilities (rows: the validation
    cells in order), its ``(depth, model)`` parts (two for a cross-fitted network), the training curves and
    the validation loss of each depth tried."""

    val_loss: float
    parts: list
    history: Any
    val_proba: np.ndarray
    tried: dict
    #: a logistic regression's out-of-fold probabilities on every labelled cell at its depth (rows: labelled
    #: cells in order), when cross-validation ran (``depth_folds``); else None
    oof_proba: np.ndarray | None = None
    #: a network's, per part: the :class:`History` of REFINE's residual path trained alone (its residual
    #: start; ``None`` for other models) and the part's own, to train it again on every labelled cell
    replays: list | None = None
    #: REFINE's linear head: the scale of the representation's columns chosen (:data:`REP_SCALES`) and the
    #: validation (or cross-validated) loss of each scale tried at the chosen depth (None: no choice made)
    rep_scale: float = 1.0
    rep_scale_tried: dict | None = None
    #: the linear residual's inverse penalty chosen (:data:`LINEAR_CS`) and the cross-validated macro-F1 of each
    #: ``C`` tried at the chosen depth and scale (None: no choice made)
    penalty: float = 1.0
    penalty_tried: dict | None = None
    #: the factor on its logits (temperature scaling, fitted on the out-of-fold probabilities at that penalty)
    logit_scale: float = 1.0


@dataclass(frozen=True)
class _Inputs:
    expression: np.ndarray
    rep: np.ndarray | None
    adjacency: sp.csr_matrix | None
    cache: dict = field(default_factory=dict)


def _dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def effective_number_weights(counts: np.ndarray, beta: float = EFFECTIVE_NUMBER_BETA) -> np.ndarray:
    """Per-class weights ``(1 - beta) / (1 - beta ** n_c)`` (the inverse effective number of ``n_c`` cells),
    scaled so that the mean weight over the cells is 1; classes without cells get 0."""
    counts = np.asarray(counts, dtype=np.float64)
    raw = np.zeros_like(counts)
    present = counts > 0
    raw[present] = (1 - beta) / (1 - beta ** counts[present])
    return raw * counts.sum() / (raw * counts).sum()


class RefineAnnotator:
    """Annotate cells of spatial data with REFINE or a baseline (scvi-tools style: construct, train,
    predict, save, load).

    Parameters
    ----------
    adata
        Reference cells: expression in ``X`` (or ``layer``), frozen representation in ``obsm[rep_key]``,
        spatial graph in ``obsp[graph_key]`` (see :func:`spatial_refine.pp.spatial_neighbors`).
    labels_key
        ``obs`` column of labels. Missing values (NaN) or ``unlabeled_category`` mark unlabelled cells:
        they take part in the graph but not in the loss.
    rep_key
        ``obsm`` key of the frozen representation (default the scGPT embedding, ``"X_scGPT"``).
    graph_key
        ``obsp`` key of the spatial graph (squidpy's default).
    layer
        Expression layer; ``None`` uses ``X``. Expected log-normalised (as scanpy's ``log1p``).
    strategy
        ``"refine"`` (graph residual encoder + frozen representation, one linear head; default),
        ``"gnn"`` (the same graph encoder from scratch), ``"mlp"`` (expression MLP from scratch),
        ``"linear_probe"`` / ``"adapter"`` (on the frozen representation), ``"refine_mlp"`` (REFINE with
        an expression MLP, no graph), ``"logreg"`` (logistic regression on expression),
        ``"neighbor_logreg"`` (cell + mean of its 1..L-hop neighbours, then logistic regression).
    encoder
        The graph residual encoder. ``"sign"`` (default): SIGN, the cell's expression and the mean
        expression of its 1..L-hop neighbourhoods, aggregated once with sparse products, each through its
        own projection (fast at any graph size: training touches the labelled cells only). Or a
        torch-geometric message-passing network: ``"sage"`` (GraphSAGE), ``"gcn"``, ``"gat"``, with a
        self path and jumping-knowledge outputs (:class:`~spatial_refine.encoders.GNNEncoder`).
    hidden
        Width of the residual encoder's layers. For ``"sign"``, ``None`` is the linear residual: the hop
        features as they are, so REFINE's head is a multinomial logistic regression on
        ``[P^0 x, ..., P^L x, f_rep]`` (and ``strategy="gnn"`` one on the hop features alone). That problem
        is convex and is solved exactly (scikit-learn's L-BFGS, L2 penalty on standardised features, as the
        ``logreg`` baselines; REFINE's chooses its ``C``, see :data:`LINEAR_CS`), not by gradient steps.
        ``"auto"`` (default): for REFINE with ``"sign"``, four models are fitted, each with its own depth chosen
        on validation: the network of width 64, the linear residual, and its two limits, the logistic regression
        on the hop features alone (the residual from scratch, ``"linear[hops]"``) and on the frozen
        representation alone (the linear probe, ``"linear[rep]"``); greedy ensemble selection on the validation
        cells (Caruana et al., 2004: 10 rounds, with replacement,
        :func:`~spatial_refine.refine.greedy_ensemble_weights`) weights them, and the model
        predicts the weighted mean of their class probabilities (``members_``, the kept ones;
        ``metrics_["hidden_tried"]`` each candidate's validation loss, ``metrics_["ensemble_weights"]`` the
        weights). The network is cross-fitted for this: trained twice, each time with its depth, start and
        early-stopping epoch chosen on one half of the validation cells and scored on the other, and it
        predicts the mean of the two (two members sharing its weight). Otherwise width 64.
    n_layers
        Hops of context of the residual encoder (message-passing layers for the torch-geometric ones), or
        neighbour hops of ``neighbor_logreg``; ``"auto"`` chooses on the validation split among 0-3
        (``"sign"``, ``neighbor_logreg``) or 1-3 (message passing).
    dropout
        Dropout in the residual encoder.
    unlabeled_category
        Label value meaning "unlabelled" (in addition to NaN).
    """

    def __init__(
        self,
        adata: AnnData,
        labels_key: str,
        *,
        rep_key: str = REP_KEY,
        graph_key: str = GRAPH_KEY,
        layer: str | None = None,
        strategy: str = "refine",
        encoder: str = "sign",
        hidden: int | Literal["auto"] | None = "auto",
        n_layers: int | Literal["auto"] = "auto",
        dropout: float = 0.2,
        unlabeled_category: Any = None,
    ) -> None:
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}.")
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {encoder!r}: choose one of {', '.join(ENCODERS)}.")
        if hidden is None and encoder != "sign":
            raise ValueError(f"hidden=None (no projection) is only possible with encoder='sign', not {encoder!r}.")
        if hidden is not None and hidden != "auto":
            if not _is_integer(hidden) or hidden < 1:
                raise ValueError(f"hidden must be a positive integer, None or 'auto', got {hidden!r}.")
            hidden = int(hidden)
        if n_layers != "auto":
            if not _is_integer(n_layers) or n_layers < 0:
                raise ValueError(f"n_layers must be a non-negative integer or 'auto', got {n_layers!r}.")
            n_layers = int(n_layers)
        if labels_key not in adata.obs:
            raise ValueError(f"labels_key {labels_key!r} is not a column of adata.obs.")
        self.params = {
            "labels_key": labels_key,
            "rep_key": rep_key,
            "graph_key": graph_key,
            "layer": layer,
            "strategy": strategy,
            "encoder": encoder,
            "hidden": hidden,
            "n_layers": n_layers,
            "dropout": dropout,
            "unlabeled_category": unlabeled_category,
        }
        self.adata = adata
        self.genes_ = np.asarray(adata.var_names, dtype=str)
        labels = adata.obs[labels_key]
        unlabelled = labels.isna().to_numpy()
        if unlabeled_category is not None:
            unlabelled |= (labels.astype(object) == unlabeled_category).to_numpy()
        self.labelled_ = np.flatnonzero(~unlabelled)
        if len(self.labelled_) == 0:
            raise ValueError(f"adata.obs[{labels_key!r}] has no labelled cell.")
        values = labels.astype(object).to_numpy()[self.labelled_].astype(str)
        self.classes_, codes = _classes(values, labels.iloc[self.labelled_])
        missing_like = sorted(str(c) for c in set(self.classes_) & _MISSING_STRINGS)
        if missing_like:
            warnings.warn(
                f"adata.obs[{labels_key!r}] has the class(es) {missing_like}: missing labels turned into strings "
                "(e.g. by .astype(str))? Unlabelled cells must be NaN, or pass unlabeled_category="
                f"{missing_like[0]!r}.",
                UserWarning,
                stacklevel=2,
            )
        counts = np.bincount(codes)
        if len(self.classes_) < 2:
            raise ValueError(f"adata.obs[{labels_key!r}] has a single class: annotation needs at least two.")
        if counts.min() < 2:
            rare = [str(c) for c in self.classes_[counts < 2]]
            raise ValueError(
                f"Classes with a single labelled cell: {rare}. Merge them into another class or mark them "
                f"unlabelled (NaN or unlabeled_category) before training."
            )
        self.codes_ = codes
        #: cells pseudo-labelled by self-training (positions in ``adata.obs``; ``train(self_training=...)``)
        self.pseudo_labelled_: np.ndarray | None = None
        #: strength of the smoothing of the predicted probabilities over the graph (0: none; ``train(smoothing=...)``)
        self.smoothing_ = 0.0
        self.graph_params_ = _graph_params(adata, graph_key)
        #: the fitted models whose class probabilities are averaged with their weights (one, or those ensemble
        #: selection kept with ``hidden="auto"``); ``model_``, ``hidden_`` and ``n_layers_`` are those of the
        #: first, the heaviest
        self.members_: list[_Member] = []
        self.hidden_ = self._candidates()[0][0]
        self.history_ = None
        self.metrics_: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------
    # reading AnnData
    @property
    def uses_rep(self) -> bool:
        return self.params["strategy"] in _USES_REP

    @property
    def uses_graph(self) -> bool:
        return self.params["strategy"] in _USES_GRAPH

    @property
    def _graph_encoder(self) -> str | None:
        """The graph residual encoder the model uses (``"sign"``, ``"sage"``...), or ``None``."""
        return self.params["encoder"] if STRATEGIES[self.params["strategy"]][1] == "gnn" else None

    @property
    def _message_passing(self) -> bool:
        """Whether the model runs on graph batches (torch-geometric layers), not on rows of features."""
        return self._graph_encoder not in (None, "sign")

    @property
    def _linear_residual(self) -> bool:
        """REFINE / GNN with the identity SIGN encoder: a convex logistic regression, solved exactly."""
        return self._uses_hops and self.hidden_ is None

    @property
    def _refine_linear_head(self) -> bool:
        """REFINE's linear residual (its linear head, or that head on one block): it tunes its penalty."""
        return self.params["strategy"] == "refine" and self._linear_residual

    @property
    def _convex(self) -> bool:
        """Whether training is a scikit-learn logistic regression (the linear baselines, linear residual)."""
        return self.params["strategy"] in ("logreg", "neighbor_logreg") or self._linear_residual

    @property
    def model_(self) -> Any:
        """The first member's weights (``None`` before training)."""
        return self.members_[0].model if self.members_ else None

    @property
    def n_layers_(self) -> int:
        """The first member's hops of context (set by training, like every fitted attribute)."""
        if not self.members_:
            raise AttributeError("n_layers_ is set by train() (or load()).")
        return self.members_[0].n_layers

    @property
    def is_ensemble(self) -> bool:
        """Whether predictions average several fitted models (``hidden="auto"`` for REFINE with SIGN)."""
        return len(self.members_) > 1

    @property
    def _uses_hops(self) -> bool:
        """Whether the model's input is the hop features ``[x, P x, ..., P^L x]`` (SIGN)."""
        return self._graph_encoder == "sign"

    def _node_inputs(self, inputs: _Inputs, depth: int) -> np.ndarray:
        """Unstandardised input rows of the model: the expression, or for SIGN its hop features up to
        ``depth`` (computed once per input up to the deepest depth asked, then sliced)."""
        if not self._uses_hops:
            return inputs.expression
        cached = inputs.cache.get("hops")
        if cached is None or cached[0] < depth:
            cached = (depth, neighbor_aggregate(inputs.expression, inputs.adjacency, depth))
            inputs.cache["hops"] = cached
        return cached[1][:, : (depth + 1) * inputs.expression.shape[1]]

    def _inputs(self, adata: AnnData) -> _Inputs:
        """Expression aligned to the reference genes, frozen representation and graph, all validated."""
        layer = self.params["layer"]
        if layer is not None and layer not in adata.layers:
            raise ValueError(f"Layer {layer!r} is not in adata.layers.")
        matrix = adata.layers[layer] if layer is not None else adata.X
        if adata.n_obs == 0:
            raise ValueError("adata has no cells.")
        genes = np.asarray(adata.var_names, dtype=str)
        if np.array_equal(genes, self.genes_):
            expression = _dense(matrix).astype(np.float32, copy=True)
        else:
            expression = _align_genes(matrix, genes, self.genes_)
        if not np.isfinite(expression).all():
            raise ValueError("The expression matrix has NaN or infinite values: fix or drop those cells.")
        rep = None
        if self.uses_rep:
            key = self.params["rep_key"]
            if key not in adata.obsm:
                raise ValueError(
                    f"adata.obsm[{key!r}] (the frozen representation) is missing: compute it first, e.g. with "
                    "sr.tl.scgpt_embed(adata, model_dir), or pass rep_key= an existing obsm key."
                )
            rep = np.asarray(_dense(adata.obsm[key]), dtype=np.float32)
            if rep.ndim != 2 or not np.isfinite(rep).all():
                raise ValueError(f"adata.obsm[{key!r}] must be a finite (n_cells, d) matrix.")
            if self.model_ is not None and self.feature_dim_ is not None and rep.shape[1] != self.feature_dim_:
                raise ValueError(f"adata.obsm[{key!r}] has {rep.shape[1]} columns; the model expects {self.feature_dim_}.")
        adjacency = None
        if self.uses_graph:
            key = self.params["graph_key"]
            if key not in adata.obsp:
                raise ValueError(
                    f"adata.obsp[{key!r}] (the spatial graph) is missing: build it with "
                    "sr.pp.spatial_neighbors(adata) (or squidpy.gr.spatial_neighbors), or pass graph_key=."
                )
            adjacency = sp.csr_matrix(adata.obsp[key])
        return _Inputs(expression, rep, adjacency)

    # ------------------------------------------------------------------------------------------------
    # training
    def train(
        self,
        *,
        max_epochs: int = 300,
        lr: float = 5e-3,
        weight_decay: float = 1e-4,
        patience: int = 30,
        validation_fraction: float = 0.2,
        class_weight: Literal["effective", "balanced"] | dict | None = "effective",
        batch_size: int | Literal["auto"] | None = "auto",
        refit: bool | Literal["linear"] = True,
        depth_folds: int | Literal["auto"] | None = "auto",
        self_training: float | Literal["auto"] | None = "auto",
        smoothing: float | Literal["auto"] | None = "auto",
        device: str = "auto",
        random_state: int = 0,
        progress: bool = False,
    ) -> RefineAnnotator:
        """Train on the labelled cells; early-stop on a stratified validation split of them.

        ``batch_size="auto"``: models on rows (SIGN, expression or representation only) train on
        minibatches of 256 labelled cells; message-passing encoders train graphs of up to 100,000 cells
        full-batch and larger ones on exact k-hop subgraphs of 1,024 labelled cells (memory bounded by the
        batch), and then validate and predict on batches of at least 16,384 cells (no gradients: cheaper
        per cell). An integer sets the batch size of either kind; ``None`` trains full-batch.
        With ``n_layers="auto"`` each depth (0-3 hops for SIGN, 1-3 for message passing) is trained and the
        one with the lowest validation loss is kept; for REFINE the depth is chosen on the residual path
        alone (the model from scratch), and REFINE's residual start continues from that trained model
        (``metrics_["n_layers_tried"]`` holds each depth's validation loss: for a network the loss it was
        early-stopped on, class-weighted with ``class_weight``; for a logistic regression the plain log-loss).
        With ``hidden="auto"`` REFINE (SIGN) does this for the network and for the linear residual (and its
        hop-only limit; the probe limit has no depth), then ensemble selection on the validation cells weights the four:
        predictions are the weighted mean of the kept members' probabilities. The network is cross-fitted on
        two halves of the validation cells (see ``hidden``): early stopping picks the epoch of lowest loss on
        the very cells it is scored on, an optimism that made the selection favour the network
        (``benchmarks/results/diagnose_combination.md``); its two runs cost twice one network (``members_``;
        ``metrics_["hidden_tried"]`` has each candidate's validation loss, ``metrics_["ensemble_weights"]``
        the weights; the other ``metrics_`` are the weighted mean's). REFINE's linear head (the linear residual
        reading both blocks, also ``hidden=None``) then chooses, at its depth and by the same cross-validation or
        split, how strongly to penalise the frozen representation's weights against the hop features' (its
        standardised columns times each of :data:`REP_SCALES`, 0.25-4; ``metrics_["rep_scale"]`` and
        ``metrics_["rep_scale_tried"]``), since how much a task should lean on the frozen model varies
        (``benchmarks/results/diagnose_rep_scale.md``). By the same cross-validation each of REFINE's linear members
        then chooses its inverse L2 penalty ``C`` among :data:`LINEAR_CS` (0.01-1) by the out-of-fold macro-F1, and
        its logits are scaled by the factor that minimises the out-of-fold log-loss at that ``C`` (temperature
        scaling, :data:`LINEAR_TEMPERATURE`), so that ensemble selection judges a strongly penalised member by
        its predictions (``metrics_["penalty"]`` and ``metrics_["penalty_tried"]``, per member; without
        cross-validation ``C = 1``, unscaled). Logistic regressions are solved by L-BFGS; ``max_epochs``,
        ``lr``, ``weight_decay``, ``patience`` and ``batch_size`` apply to the networks only.

        ``class_weight="effective"`` (default): each labelled cell's loss is weighted by the inverse "effective
        number" of its class's labelled cells (Cui et al., CVPR 2019), ``(1 - beta) / (1 - beta ** n_c)`` with
        ``beta = 0.99``, scaled to a mean weight of 1 per labelled cell, in every network and logistic
        regression trained: close to ``"balanced"`` among classes of up to a few dozen cells, equal per cell once
        every class has a few hundred (the effective number saturates at ``1 / (1 - beta) = 100``): a class of
        20 cells counts 1/18 as much in total as one of 2,000 (unweighted 1/100, balanced as much). Annotation
        is judged per class (macro-F1), and with unweighted losses the rare classes were the ones lost: on the spatial benchmark
        (``benchmarks/results/spatial_annotation.md``, 30 settings) these weights raised REFINE's macro-F1 by
        0.010 on average over unweighted losses (higher in 24, lower in 3) and by 0.0014 over balanced ones,
        which over-predict rare classes once they have many labels (osmFISH regions with 3,000 labels: 0.960
        against 0.953 balanced and 0.959 unweighted). The weights are fixed from every labelled cell (the same in every fit of a run).
        ``"balanced"``: ``n_labelled / (n_classes * n_cells_of_its_class)``, scikit-learn's
        ``class_weight="balanced"``, counted on each fit's rows (the default before 2026-12-02).
        ``None``: every cell weighs the same (the plain likelihood: probabilities for the classes' own frequencies).
        A dict ``{label: weight}`` sets the weights by hand, as in scikit-learn (classes not named weigh 1), fixed
        like ``"effective"``.

        ``refit=True`` (default): every kept model is fitted again on *all* labelled cells once the split has
        made its choices, as scikit-learn's ``GridSearchCV`` refits and AutoGluon's ``refit_full``: otherwise
        the held-out fifth of the labels would only ever choose. A logistic regression (``logreg``,
        ``neighbor_logreg``, the linear residual) is solved again at its chosen depth; a network (each part of
        the cross-fitted one) is trained again without validation, at its depth, from the start its split run
        kept (the linear probe, or REFINE's residual path, itself trained again) and for the epochs that run
        kept (:func:`~spatial_refine.refine.fit` with ``replay``). The ensemble weights and ``metrics_`` stay
        those of the models fitted on the split (measured on cells they did not see). Refitting the networks too
        raised REFINE's macro-F1 on the spatial benchmark by 0.0012 (seeds 0-4) and 0.0011 (seeds 5-9) on
        average over refitting the logistic regressions alone (higher by more than 0.002 in 17 of 60 settings,
        lower in 4; ``benchmarks/results/diagnose_network_refit.md``), for one more training of each kept
        network part (1.06-1.28x the seconds per fit there). ``"linear"``: the logistic regressions only, the
        networks keep the models early-stopped on the split (the default before 2026-12-03); ``False``: nothing
        is refitted.
        ``train_indices_`` are the cells the kept models were fitted on.

        ``depth_folds=k``: a logistic regression chooses its depth (REFINE's linear head then its representation
        scale) by ``k``-fold cross-validation on all labelled cells (stratified, shuffled with ``random_state``;
        fewer folds when a class has fewer than ``k`` cells), lowest log-loss, as ``GridSearchCV`` would, instead
        of on the one validation split (which still gives its validation metrics and ensemble-selection
        probabilities); ``None``: on the split.
        ``"auto"`` (default): 5 folds up to 10,000 labelled cells, where one split of a fifth of them is a noisy
        judge and the fits are cheap, the split above (``train_settings_["depth_folds"]`` holds the choice).
        Five fits per depth (and scale) instead of one; ``benchmarks/results/diagnose_linear_depth.md`` measures
        the depth's choice. Networks always choose on the split.

        ``self_training``: pseudo-labels for unlabelled cells, so that the models also learn from the cells they
        are asked about. Once the split has made every choice (depths, scale, early-stopping epochs, ensemble
        weights: on the true labels alone), the models fitted on the split predict the candidate cells; in each
        predicted class the fraction ``f`` of its cells of highest probability (rounded up; at most
        :data:`SELF_TRAINING_MAX_CELLS` in all, each class keeping its share) take that class as a
        *pseudo-label*, and the refit trains every kept model on the labelled *and* the pseudo-labelled cells
        (class weights as fixed from the labelled cells; ``metrics_`` stay those of the split). Needs
        ``refit=True``. ``"auto"`` (default): for ``strategy="refine"``, ``f`` = :data:`SELF_TRAINING_FRACTION` of
        the cells of the *new slices*, those of ``adata.obs[library_key]`` without any labelled cell,
        ``library_key`` being the one the graph was built with (:func:`spatial_refine.pp.spatial_neighbors`);
        nothing when the graph records no slices, every slice has labels, ``refit`` is not ``True`` or for the
        other strategies (the baselines). So to annotate new slices, put them in ``adata`` unlabelled beside the
        reference (``library_key``: one graph per slice), as scANVI's users do, and REFINE adapts to them
        (``benchmarks/results/diagnose_self_training.md``); :func:`spatial_refine.tl.annotate` with a trained
        model does not train again. A fraction ``f`` in (0, 1]: every unlabelled cell of ``adata`` is a
        candidate (any strategy). ``None``: no self-training. ``pseudo_labelled_`` holds the pseudo-labelled
        cells (positions in ``adata.obs``), ``metrics_["n_pseudo_labelled"]`` their number and
        ``train_settings_["self_training"]`` the fraction used (``None``: none).

        ``smoothing``: the predicted class probabilities propagated over the spatial graph,
        ``Z <- (1 - alpha) p + alpha P Z`` for :data:`SMOOTHING_STEPS` steps (``P`` the neighbour mean;
        :func:`~spatial_refine.refine.neighbors.smooth_probabilities`): each cell keeps ``1 - alpha`` of its own
        prediction and takes the rest from its neighbourhood, at every :meth:`predict` (on the graph of the
        AnnData predicted). Neighbouring cells that share a label (anatomical regions) then correct each other's
        errors; cell types, which neighbours do not share, blur. ``"auto"``: for ``strategy="refine"``
        (:data:`SMOOTHING_AUTO_STRATEGIES`), ``alpha`` is chosen among :data:`SMOOTHING_ALPHAS` (0, none, included)
        by the validation log-loss of the split's models' smoothed predictions, once the split has made its other
        choices (``smoothing_``; ``metrics_["smoothing_tried"]`` the loss of each; the other ``metrics_`` are those
        before smoothing);
        nothing for the other strategies. A number in [0, 1): that ``alpha`` (strategies with a graph).
        ``None``: no smoothing. Self-training's pseudo-labels come from the unsmoothed predictions. On the spatial
        benchmark ``"auto"`` raised REFINE on osmFISH's anatomical regions by +0.010 to +0.023 macro-F1 at 100-1,000
        labels (+0.002 at 3,000; higher in all 16 settings of both seed sets) and left the cell types as they were
        (``alpha = 0`` in 215 of 220 fits; ``benchmarks/results/diagnose_smoothing.md``), for one more prediction
        of every cell by the split's models and the propagation: 1.54x the train time and 1.7x the predict time at
        1M cells (``benchmarks/results/spatial_scale_smoothing.md``). It is a generic step: the graph baselines
        smoothed the same way gain as much (``diagnose_smoothing_baselines-osmfish-region.md``).
        """
        if self.adata is None:
            raise RuntimeError(
                "This model was loaded from disk: it predicts and annotates, but has no reference AnnData to train "
                "on. Construct a new RefineAnnotator(adata, labels_key, ...) to train again."
            )
        if not (self_training is None or (isinstance(self_training, str) and self_training == "auto") or (
            isinstance(self_training, (int, float)) and not isinstance(self_training, bool) and 0 < self_training <= 1
        )):
            raise ValueError(
                f"self_training must be 'auto', None or the fraction in (0, 1] of each predicted class's unlabelled "
                f"cells to pseudo-label, got {self_training!r}."
            )
        if not (smoothing is None or (isinstance(smoothing, str) and smoothing == "auto") or (
            isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool) and 0 <= smoothing < 1
        )):
            raise ValueError(f"smoothing must be 'auto', None or the strength alpha in [0, 1) of the smoothing of the "
                             f"predictions over the graph, got {smoothing!r}.")
        if isinstance(smoothing, (int, float)) and smoothing > 0 and not self.uses_graph:
            raise ValueError(f"smoothing propagates predictions over the spatial graph, which strategy "
                             f"{self.params['strategy']!r} does not read: use one of {sorted(_USES_GRAPH)} or "
                             f"smoothing=None.")
        if isinstance(class_weight, dict):  # one weight per class code; the settings keep it JSON-safe
            # class names are text here (numeric labels too), so keys match by their text: {1: 3.0} names "1"
            by_name = {str(k): v for k, v in class_weight.items()}
            settings_weight = {k: float(v) for k, v in by_name.items()}
            class_weight = np.asarray(_dict_class_weights(by_name, self.classes_))
            if class_weight[self.codes_].sum() == 0:
                raise ValueError("class_weight gives every labelled cell weight 0: nothing would be learnt.")
        elif isinstance(class_weight, str) and class_weight == "effective":  # every labelled cell's class counts
            settings_weight = class_weight
            class_weight = effective_number_weights(np.bincount(self.codes_, minlength=len(self.classes_)))
        elif class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
            settings_weight = class_weight
        else:
            raise ValueError(
                f"class_weight must be None, 'balanced', 'effective' or a dict label -> weight, got {class_weight!r}."
            )
        if batch_size not in ("auto", None) and (not _is_integer(batch_size) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, 'auto' or None (full batch), got {batch_size!r}.")
        if depth_folds == "auto":
            depth_folds = CV_DEPTH_FOLDS if len(self.labelled_) <= CV_DEPTH_MAX_LABELLED else None
        elif depth_folds is not None and (not _is_integer(depth_folds) or depth_folds < 2):
            raise ValueError(f"depth_folds must be 'auto', an integer >= 2 or None, got {depth_folds!r}.")
        depth_folds = None if depth_folds is None else int(depth_folds)
        if refit not in (True, False, "linear"):
            raise ValueError(f"refit must be True, 'linear' or False, got {refit!r}.")
        pseudo_candidates = None  # every unlabelled cell
        if isinstance(self_training, str):  # "auto": REFINE adapts to the new slices
            applies = self.params["strategy"] == "refine" and refit is True
            pseudo_candidates = self._new_slice_cells() if applies else np.empty(0, dtype=np.int64)
            self_training = SELF_TRAINING_FRACTION if len(pseudo_candidates) else None
        elif self_training is not None and refit is not True:
            raise ValueError(f"self_training trains the refitted models on the pseudo-labels: it needs refit=True, "
                             f"got refit={refit!r}.")
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
        inputs = self._inputs(self.adata)
        index = np.arange(len(self.labelled_))
        train_pos, val_pos = _stratified_split(index, self.codes_, validation_fraction, random_state)
        val_pos = np.sort(val_pos)  # the order of validation_indices_ (rows of every validation probability)
        depths = [self.params["n_layers"]] if self.params["n_layers"] != "auto" else self._auto_depths()
        if not self.uses_graph:
            depths = [0]
        node_inputs = self._node_inputs(inputs, max(depths))
        self.input_mean_ = node_inputs.mean(0)
        self.input_std_ = np.maximum(node_inputs.std(0), 1e-6)
        self.feature_dim_ = None if inputs.rep is None else inputs.rep.shape[1]
        self.train_settings_ = {
            "max_epochs": max_epochs,
            "lr": lr,
            "weight_decay": weight_decay,
            "patience": patience,
            "validation_fraction": validation_fraction,
            "class_weight": settings_weight,
            "batch_size": batch_size,
            "refit": refit,
            "depth_folds": depth_folds,
            "self_training": self_training,
            "smoothing": smoothing,
            "random_state": random_state,
        }
        config = TrainConfig(lr=lr, weight_decay=weight_decay, max_epochs=max_epochs, patience=patience,
                             device=device, random_state=random_state, progress=progress)
        candidates = self._candidates()
        # ensemble selection needs validation probabilities that no choice was made on: a network is
        # early-stopped (and its depth and start chosen) on its validation cells, so it is cross-fitted on
        # two halves of them instead (the logistic regressions only choose a depth: kept on the whole split)
        halves = _halves(val_pos, random_state) if len(candidates) > 1 and len(val_pos) >= 2 else None
        results = {}  # candidate name -> (candidate, _Fit)
        for hidden, kind in candidates:
            self.hidden_ = hidden
            candidate = _Member(hidden, 0, None, inputs=kind)
            fit_args = (inputs, train_pos, val_pos, depths if kind != "rep" else [0], config, class_weight, batch_size,
                        random_state, device, kind)
            if halves is not None and not self._convex:
                results[candidate.name] = candidate, self._cross_fit(*fit_args, halves=halves)
            else:
                results[candidate.name] = candidate, self._fit_depths(*fit_args)
        names = list(results)
        weight_of = self._ensemble_weights({n: fitted for n, (_, fitted) in results.items()}, val_pos)
        # the heavier member first, then the lower validation loss
        kept = sorted((n for n in names if weight_of[n] > 0), key=lambda n: (-weight_of[n], results[n][1].val_loss))
        true_labelled, true_codes = self.labelled_, self.codes_
        self.pseudo_labelled_ = None
        choose_smoothing = (smoothing == "auto" and self.params["strategy"] in SMOOTHING_AUTO_STRATEGIES
                            and self.uses_graph)
        self.smoothing_ = float(smoothing) if isinstance(smoothing, (int, float)) else 0.0
        smoothing_tried, split_proba = None, None
        if self_training is not None or choose_smoothing:
            split_members, _ = self._kept_members(kept, results, weight_of, inputs, index, False, config,
                                                  class_weight, batch_size, random_state)  # as fitted on the split
        if choose_smoothing:  # on the split's predictions of every cell, scored on the validation cells
            split_proba = self._predict_proba(inputs, np.arange(self.adata.n_obs), device, split_members)
            self.smoothing_, smoothing_tried = self._choose_smoothing(split_proba, inputs, val_pos)
        if self_training is not None:  # pseudo-labels from the split's models join the labels for the refit
            cells, codes = self._pseudo_labels(inputs, split_members, self_training, device, pseudo_candidates,
                                               split_proba)
            self.labelled_ = np.concatenate([true_labelled, cells])
            self.codes_ = np.concatenate([true_codes, codes.astype(true_codes.dtype)])
            index = np.arange(len(self.labelled_))
            self.pseudo_labelled_ = np.sort(cells)
        try:  # the refit (with self-training: on the pseudo-labels too)
            members, refitted = self._kept_members(kept, results, weight_of, inputs, index, refit, config,
                                                   class_weight, batch_size, random_state)
            #: positions in ``adata.obs`` of the cells the kept models were fitted on (all labelled cells after a
            #: refit, and the pseudo-labelled ones with self-training) and of the validation cells that chose them
            fitted_on = index if refitted else train_pos
            self.train_indices_ = np.sort(self.labelled_[fitted_on])
        finally:
            self.labelled_, self.codes_ = true_labelled, true_codes
        self.members_ = members
        self.hidden_ = members[0].hidden
        # the training curves of the network candidate, kept or not (a logistic regression has none)
        self.history_ = next((f.history for _, f in results.values() if f.history is not None), None)
        # keep the statistics of the kept depths' columns
        width = self._node_inputs(inputs, max(m.n_layers for m in members)).shape[1]
        self.input_mean_, self.input_std_ = self.input_mean_[:width], self.input_std_[:width]
        val_proba = sum(weight_of[n] * results[n][1].val_proba for n in names)
        self.metrics_ = _metrics(self.codes_[val_pos], val_proba)
        self.metrics_["n_layers_tried"] = results[kept[0]][1].tried
        head = next((f for _, f in results.values() if f.rep_scale_tried is not None), None)
        if head is not None:  # REFINE's linear head, kept or not
            self.metrics_["rep_scale"], self.metrics_["rep_scale_tried"] = head.rep_scale, head.rep_scale_tried
        chose_penalty = {n: f for n, (_, f) in results.items() if f.penalty_tried is not None}
        if chose_penalty:  # the linear residual's members, kept or not: C chosen and each C's cross-validated F1
            self.metrics_["penalty"] = {n: f.penalty for n, f in chose_penalty.items()}
            self.metrics_["penalty_tried"] = {n: f.penalty_tried for n, f in chose_penalty.items()}
        if len(results) > 1:
            self.metrics_["hidden_tried"] = {n: results[n][1].val_loss for n in names}
            self.metrics_["ensemble_weights"] = {n: weight_of[n] for n in kept}
        self.metrics_["n_train"], self.metrics_["n_val"] = len(fitted_on), len(val_pos)
        self.metrics_["refit"] = refitted
        if self.pseudo_labelled_ is not None:
            self.metrics_["n_pseudo_labelled"] = len(self.pseudo_labelled_)
        if smoothing_tried is not None:
            self.metrics_["smoothing"], self.metrics_["smoothing_tried"] = self.smoothing_, smoothing_tried
        self.validation_indices_ = np.sort(self.labelled_[val_pos])
        return self

    def _kept_members(self, kept, results, weight_of, inputs, index, refit, config, class_weight, batch_size,
                      random_state) -> tuple[list[_Member], bool]:
        """The members of the kept candidates (``kept``: names into ``results``, weights ``weight_of``), each
        model refitted on the labelled cells ``index`` as ``refit`` says; and whether any was refitted."""
        members, refitted = [], False
        for name in kept:
            candidate, fitted = results[name]
            self.hidden_ = candidate.hidden
            for part, (depth, model) in enumerate(fitted.parts):  # a cross-fitted network: two, sharing the weight
                if refit and self._convex:  # the depth is chosen; the labels the split held out now train too
                    refitted = True
                    model, _ = self._train_sklearn(inputs, index, depth, random_state, class_weight, candidate.inputs,
                                                   rep_scale=fitted.rep_scale, penalty=fitted.penalty,
                                                   logit_scale=fitted.logit_scale)
                elif refit is True and fitted.replays is not None:  # depth, start and epochs chosen: train again
                    refitted = True
                    model = self._refit_network(inputs, index, depth, fitted.replays[part], config, class_weight,
                                                batch_size)
                members.append(_Member(candidate.hidden, depth, model, candidate.inputs,
                                       weight_of[name] / len(fitted.parts)))
        return members, refitted

    def _new_slice_cells(self) -> np.ndarray:
        """Positions of the cells of slices without a labelled cell: slices as ``obs[library_key]`` of the graph's
        ``library_key`` (empty when the graph records none)."""
        library_key = (self.graph_params_ or {}).get("library_key")
        if library_key is None or library_key not in self.adata.obs:
            return np.empty(0, dtype=np.int64)
        slices = self.adata.obs[library_key].astype(str).to_numpy()
        return np.flatnonzero(~np.isin(slices, np.unique(slices[self.labelled_])))

    def _pseudo_labels(self, inputs: _Inputs, members: list[_Member], fraction: float, device: str,
                       candidates: np.ndarray | None = None, proba: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The cells to pseudo-label (positions in ``adata.obs``; among ``candidates``, default every unlabelled
        cell) and their class codes: the weighted mean of ``members``' probabilities (``proba``: already computed
        for every cell), then :func:`_confident_per_class`."""
        unlabelled = np.setdiff1d(np.arange(self.adata.n_obs), self.labelled_)
        if candidates is not None:
            unlabelled = np.intersect1d(unlabelled, candidates)
        if len(unlabelled) == 0:
            return unlabelled, np.empty(0, dtype=np.int64)
        proba = self._predict_proba(inputs, unlabelled, device, members) if proba is None else proba[unlabelled]
        rows, codes = _confident_per_class(proba, fraction, SELF_TRAINING_MAX_CELLS)
        return unlabelled[rows], codes

    def _refit_network(self, inputs, train_pos, depth, replays, config, class_weight, batch_size):
        """The network of width ``self.hidden_`` and ``depth`` hops trained again on the labelled cells
        ``train_pos``, without validation: from the start its split run kept, each stage (REFINE's residual
        path alone, the linear probe, the model) for the epochs that run kept (``replays``: the residual
        path's :class:`History` or ``None``, and the model's)."""
        scratch_history, history = replays
        scratch = None
        if history.start == "residual" and scratch_history is not None:
            scratch, _ = self._train_torch(inputs, train_pos, None, depth, config, class_weight, batch_size,
                                           core="notrans", replay=scratch_history)
        model, _ = self._train_torch(inputs, train_pos, None, depth, config, class_weight, batch_size,
                                     scratch_model=scratch, replay=history)
        return model

    def _ensemble_weights(self, fits: dict[str, _Fit], val_pos: np.ndarray) -> dict[str, float]:
        """Ensemble selection (greedy, :data:`ENSEMBLE_ROUNDS` rounds; ties: the earlier candidate). On the
        validation cells; or, with :data:`CV_LINEAR_SELECTION` and at least two candidates that have out-of-fold
        probabilities of all labelled cells (the logistic regressions), in two stages: those among themselves on
        them, then their blend against the other candidates (the network) on the validation cells."""
        names = list(fits)
        if len(names) == 1:
            return {names[0]: 1.0}
        linear = [n for n in names if fits[n].oof_proba is not None]
        if not (CV_LINEAR_SELECTION and len(linear) > 1):
            weights = greedy_ensemble_weights([fits[n].val_proba for n in names], self.codes_[val_pos],
                                              rounds=ENSEMBLE_ROUNDS)
            return {n: float(w) for n, w in zip(names, weights, strict=True)}
        inner = greedy_ensemble_weights([fits[n].oof_proba for n in linear], self.codes_, rounds=ENSEMBLE_ROUNDS)
        others = [n for n in names if n not in linear]
        blend = sum(w * fits[n].val_proba for n, w in zip(linear, inner, strict=True))
        outer = greedy_ensemble_weights([fits[n].val_proba for n in others] + [blend], self.codes_[val_pos],
                                        rounds=ENSEMBLE_ROUNDS)
        weight_of = {n: float(w) for n, w in zip(others, outer, strict=False)}
        weight_of.update({n: float(outer[-1] * w) for n, w in zip(linear, inner, strict=True)})
        return {n: weight_of[n] for n in names}

    @property
    def _cv_selects_members(self) -> bool:
        """Whether ensemble selection will read the logistic regressions' out-of-fold probabilities."""
        return len(self._candidates()) > 1

    def _candidates(self) -> list[tuple[int | None, str]]:
        """Models to train, as (residual width, inputs of a logistic regression). ``hidden="auto"`` for REFINE
        with SIGN: the SIGN network, REFINE's linear head on the hop features and the frozen representation,
        and that head on either block alone (the residual from scratch, the linear probe); ensemble
        selection weights them. Everywhere else ``"auto"`` means the network width :data:`AUTO_HIDDEN`."""
        hidden = self.params["hidden"]
        if hidden != "auto":
            return [(hidden, "all")]
        if STRATEGIES[self.params["strategy"]][1] is None:  # no residual encoder: no width to choose
            return [(None, "all")]
        if self.params["strategy"] == "refine" and self.params["encoder"] == "sign":
            return [(AUTO_HIDDEN, "all"), *((None, kind) for kind in LINEAR_INPUTS)]
        return [(AUTO_HIDDEN, "all")]

    def _cross_fit(self, inputs, train_pos, val_pos, depths, config, class_weight, batch_size, random_state, device,
                   kind="all", *, halves):
        """:meth:`_fit_depths` twice, each run choosing depth, start and early-stopping epoch on one half of the
        validation cells and scoring the other half: validation probabilities free of the choices' optimism.
        ``parts`` holds both models (the member predicts their mean); ``history`` and ``tried`` are the first's."""
        val_proba = np.empty((len(val_pos), len(self.classes_)), dtype=np.float32)
        parts, runs = [], []
        for chooser, scored in (halves, halves[::-1]):
            run = self._fit_depths(inputs, train_pos, val_pos[chooser], depths, config, class_weight, batch_size,
                                   random_state, device, kind)
            (depth, model), = run.parts
            val_proba[scored] = self._member_proba(_Member(self.hidden_, depth, model, kind), inputs,
                                                   self.labelled_[val_pos[scored]], device)
            parts.append((depth, model))
            runs.append(run)
        val_loss = log_loss(val_proba, self.codes_[val_pos])
        return _Fit(val_loss, parts, runs[0].history, val_proba, runs[0].tried,
                    replays=[r for run in runs for r in run.replays])

    def _fit_depths(self, inputs, train_pos, val_pos, depths, config, class_weight, batch_size, random_state, device,
                    kind="all"):
        """Train the model of width ``self.hidden_`` (a logistic regression: reading ``kind``) at each candidate
        depth; return the one of the lowest validation loss as a :class:`_Fit`."""
        scratch = scratch_history = None
        if STRATEGIES[self.params["strategy"]][0] == "refine" and not self._convex:
            # the depth is the residual encoder's: choose it on the residual path alone (the model from
            # scratch, trained exactly as the matching baseline strategy), then train REFINE at that
            # depth, its residual start being that very model
            tried = {}
            for depth in depths:
                model, history = self._train_torch(
                    inputs, train_pos, val_pos, depth, config, class_weight, batch_size, core="notrans"
                )
                tried[depth] = (history.best_val_loss, model, history)
            best_depth = min(tried, key=lambda d: tried[d][0])
            _, scratch, scratch_history = tried[best_depth]
            depths = [best_depth]
        cv_tried, oof = None, None
        cv_selection = CV_LINEAR_SELECTION and self._cv_selects_members
        scales = self._rep_scales(inputs, kind)
        penalties = self._penalties()
        scale, scale_tried, penalty, penalty_tried, logit_scale = 1.0, None, 1.0, None, 1.0
        if self._convex and self.train_settings_.get("depth_folds") and (
            len(depths) > 1 or cv_selection or len(scales) > 1 or len(penalties) > 1
        ):
            # the depth (then the representation's scale, then the penalty) by cross-validation on every labelled
            # cell; the split then fits the chosen ones
            cv_tried, cv_proba = self._cv_losses(inputs, [(d, 1.0, 1.0) for d in depths], random_state,
                                                 class_weight, kind)
            depths = [min(cv_tried, key=cv_tried.get)[0]]
            if len(scales) > 1:  # by the log-loss
                more = [(depths[0], v, 1.0) for v in scales if v != 1.0]
                more_tried, more_proba = self._cv_losses(inputs, more, random_state, class_weight, kind)
                cv_tried, cv_proba = {**cv_tried, **more_tried}, {**cv_proba, **more_proba}
                scale_tried = {v: cv_tried[depths[0], v, 1.0] for v in scales}
                scale = min(scale_tried, key=scale_tried.get)
            if len(penalties) > 1:  # by the macro-F1 (ties: the larger C, listed first)
                more = [(depths[0], scale, v) for v in penalties if v != 1.0]
                more_tried, more_proba = self._cv_losses(inputs, more, random_state, class_weight, kind)
                cv_tried, cv_proba = {**cv_tried, **more_tried}, {**cv_proba, **more_proba}
                penalty_tried = {v: _macro_f1(self.codes_, cv_proba[depths[0], scale, v]) for v in penalties}
                penalty = max(sorted(penalties, reverse=True), key=penalty_tried.get)
            if LINEAR_TEMPERATURE and self._refine_linear_head:
                logit_scale = _temperature_scale(cv_proba[depths[0], scale, penalty], self.codes_)
            oof = cv_proba[depths[0], scale, penalty] if cv_selection else None
            cv_tried = {d: loss for (d, s, c), loss in cv_tried.items() if s == 1.0 and c == 1.0}
            if len(cv_tried) == 1:  # no depth was chosen: report the split's loss as without cross-validation
                cv_tried = None
        def split_fit(depth, rep_scale):
            """(choice, validation loss, depth, model, history, validation probabilities) fitted on the split."""
            if self._convex:
                model, history = self._train_sklearn(inputs, train_pos, depth, random_state, class_weight, kind,
                                                     rep_scale=rep_scale, penalty=penalty, logit_scale=logit_scale)
            else:
                model, history = self._train_torch(
                    inputs, train_pos, val_pos, depth, config, class_weight, batch_size, scratch_model=scratch
                )
            proba = self._member_proba(_Member(self.hidden_, depth, model, kind), inputs, self.labelled_[val_pos], device)
            val_loss = log_loss(proba, self.codes_[val_pos])
            # a network's depth by the loss it was early-stopped on (class-weighted with class_weight), as
            # REFINE's residual path above chooses it; a logistic regression's by the plain log-loss
            choice = val_loss if history is None else history.best_val_loss
            return choice, val_loss, depth, model, history, proba

        candidates = [split_fit(depth, scale) for depth in depths]
        best = min(candidates, key=lambda c: c[0])
        if scale_tried is None and len(scales) > 1:  # no cross-validation: the scale on the split, at that depth
            by_scale = {s: best if s == 1.0 else split_fit(best[2], s) for s in scales}
            scale_tried = {s: float(fit[0]) for s, fit in by_scale.items()}
            scale = min(scale_tried, key=scale_tried.get)
            best = by_scale[scale]
        _, val_loss, depth, model, history, proba = best
        if scratch is not None:
            tried = {int(d): float(v[0]) for d, v in tried.items()}
        elif cv_tried is not None:
            tried = cv_tried
        else:
            tried = {int(c[2]): float(c[0]) for c in candidates}
        replays = None if history is None else [(scratch_history, history)]
        return _Fit(val_loss, [(depth, model)], history, proba, tried, oof, replays, scale, scale_tried, penalty,
                    penalty_tried, logit_scale)

    def _rep_scales(self, inputs: _Inputs, kind: str) -> tuple[float, ...]:
        """The scales of the representation's columns a logistic regression reading ``kind`` chooses among:
        :data:`REP_SCALES` for REFINE's linear head (both blocks of the linear residual's input), else none."""
        if self._convex and self._reads_both_blocks(inputs, kind):
            return tuple(dict.fromkeys(float(s) for s in REP_SCALES))
        return (1.0,)

    def _penalties(self) -> tuple[float, ...]:
        """The inverse penalties a logistic regression chooses among: :data:`LINEAR_CS` for REFINE's linear head
        and its limits, ``C = 1`` for the linear baselines (and a GNN's linear residual)."""
        if self._refine_linear_head:
            return tuple(dict.fromkeys(float(c) for c in LINEAR_CS)) or (1.0,)
        return (1.0,)

    def _reads_both_blocks(self, inputs: _Inputs, kind: str) -> bool:
        """Whether a logistic regression reading ``kind`` has the hop features and the representation as inputs."""
        return kind == "all" and self._uses_hops and inputs.rep is not None

    def _cv_losses(self, inputs, settings, random_state, class_weight, kind) -> tuple[dict, dict]:
        """Cross-validated log-loss on all labelled cells of the logistic regression at each
        ``(depth, rep_scale, penalty)`` of ``settings``, and the out-of-fold probabilities of each (same folds for
        every setting and input kind)."""
        from sklearn.model_selection import StratifiedKFold

        folds = min(self.train_settings_["depth_folds"], int(np.bincount(self.codes_).min()))
        splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
        splits = list(splitter.split(np.zeros(len(self.codes_)), self.codes_))
        losses, probas = {}, {}
        for depth, scale, penalty in settings:
            proba = np.empty((len(self.codes_), len(self.classes_)), dtype=np.float32)
            for fit_pos, held_pos in splits:
                model, _ = self._train_sklearn(inputs, fit_pos, depth, random_state, class_weight, kind,
                                               rep_scale=scale, penalty=penalty)
                proba[held_pos] = self._member_proba(_Member(None, depth, model, kind), inputs,
                                                     self.labelled_[held_pos], "cpu")
            key = (int(depth), float(scale), float(penalty))
            losses[key], probas[key] = log_loss(proba, self.codes_), proba
        return losses, probas

    def _auto_depths(self) -> list[int]:
        if self.params["strategy"] == "neighbor_logreg" or self._uses_hops:
            return [0, 1, 2, 3]
        return [1, 2, 3]

    def _standardized(self, matrix: np.ndarray, *, in_place: bool = False) -> torch.Tensor:
        """``(matrix - mean) / std`` as float32; ``in_place`` reuses ``matrix`` (a fresh copy the caller owns:
        at 1M cells x 3 hops every extra copy costs gigabytes)."""
        width = matrix.shape[1]
        out = matrix if in_place and matrix.dtype == np.float32 else matrix.astype(np.float32, copy=True)
        out -= self.input_mean_[:width]
        out /= self.input_std_[:width]
        return torch.from_numpy(out)

    def _build(self, n_genes: int, depth: int, hidden: int | None, core: str | None = None) -> torch.nn.Module:
        default_core, encoder_kind = STRATEGIES[self.params["strategy"]]
        core = core or default_core
        encoder = None
        if self._uses_hops:
            encoder = SIGNEncoder(n_genes, n_hops=depth, hidden=hidden, dropout=self.params["dropout"])
        elif self._message_passing:
            encoder = GNNEncoder(
                n_genes, hidden=hidden, n_layers=depth, conv=self.params["encoder"], dropout=self.params["dropout"]
            )
        elif encoder_kind == "mlp":
            encoder = MLPEncoder(n_genes, (hidden, hidden), self.params["dropout"])
        return build_strategy(core, n_outputs=len(self.classes_), encoder=encoder, feature_dim=self.feature_dim_)

    def _batches(
        self,
        inputs: _Inputs,
        cells: np.ndarray,
        depth: int,
        *,
        y: np.ndarray | None,
        shuffle: bool,
        batch_size,
        inference: bool = False,
    ):
        rep = None if inputs.rep is None else torch.from_numpy(inputs.rep)
        if not self._message_passing:
            tensors = {
                "x": self._standardized(self._node_inputs(inputs, depth)[cells], in_place=True),  # [cells]: a copy
                "features": None if rep is None else rep[cells],
            }
            if y is not None:
                tensors["y"] = torch.from_numpy(y)
            return TensorBatches(tensors, batch_size=256 if batch_size == "auto" else batch_size, shuffle=shuffle)
        x = self._standardized(inputs.expression)
        labels = None
        if y is not None:
            labels = torch.full((len(x),), -1, dtype=torch.int64)
            labels[torch.from_numpy(cells)] = torch.from_numpy(y)
        if batch_size == "auto":
            batch_size = None if len(x) <= FULL_BATCH_MAX_CELLS else MINIBATCH_SEEDS
        if inference and batch_size is not None:
            batch_size = max(batch_size, INFERENCE_MIN_SEEDS)
        return GraphBatches(
            inputs.adjacency,
            {"x": x, "features": rep, "y": labels},
            cells,
            n_hops=depth,
            batch_size=batch_size,
            shuffle=shuffle,
        )

    def _train_torch(
        self, inputs, train_pos, val_pos, depth, config, class_weight, batch_size, *, core=None, scratch_model=None,
        replay=None,
    ):
        """A network trained on the labelled cells ``train_pos``, early-stopped on ``val_pos``; or with
        ``val_pos=None`` and ``replay`` (a :class:`History`), trained for the epochs that run kept."""
        train_cells = self.labelled_[train_pos]
        # graph batches index by cell; tensor batches are already restricted to the cells
        order_train = np.argsort(train_cells)
        train_cells, train_y = train_cells[order_train], self.codes_[train_pos][order_train]
        val = None
        if val_pos is not None:
            val_cells = self.labelled_[val_pos]
            order_val = np.argsort(val_cells)
            val_cells, val_y = val_cells[order_val], self.codes_[val_pos][order_val]
            val = self._batches(inputs, val_cells, depth, y=val_y, shuffle=False, batch_size=batch_size, inference=True)
        with seeded(config.random_state):
            model = self._build(len(self.genes_), depth, self.hidden_, core)
        if inputs.rep is not None and model.uses_features:
            model.fit_feature_statistics(torch.from_numpy(inputs.rep[train_cells]))
        if isinstance(class_weight, np.ndarray):  # per class code, from a dict
            weights = torch.as_tensor(class_weight, dtype=torch.float32)
        else:
            weights = class_weights(train_y, len(self.classes_)) if class_weight == "balanced" else None
        history = fit(
            model,
            self._batches(inputs, train_cells, depth, y=train_y, shuffle=True, batch_size=batch_size),
            val,
            config=config,
            weights=weights,
            scratch_model=scratch_model,
            replay=replay,
        )
        return model.cpu(), history

    def _sklearn_inputs(self, inputs: _Inputs, depth: int, cells: np.ndarray) -> np.ndarray:
        """Rows ``cells`` of the logistic regression's input (unscaled: the fitted scaler is folded into
        the weights)."""
        if self._uses_hops:  # the linear residual: the hop features, then the frozen representation
            hops = self._node_inputs(inputs, depth)[cells]
            return hops if inputs.rep is None else np.hstack([hops, inputs.rep[cells]])
        # computed once per input up to the deepest depth asked (hop blocks are prefixes), then read in chunks
        hops = depth if self.params["strategy"] == "neighbor_logreg" else 0
        cached = inputs.cache.get("linear_inputs")
        if cached is None or cached[0] < hops:
            x = self._standardized(inputs.expression).numpy()
            cached = (hops, neighbor_aggregate(x, inputs.adjacency, hops) if hops else x)
            inputs.cache["linear_inputs"] = cached
        return cached[1][cells, : (hops + 1) * inputs.expression.shape[1]]

    def _train_sklearn(self, inputs, train_pos, depth, random_state, class_weight=None, kind="all", *,
                       rep_scale: float = 1.0, penalty: float = 1.0, logit_scale: float = 1.0):
        """A logistic regression on the rows ``train_pos``, its weights as arrays over every input column
        (``kind="hops"`` / ``"rep"``: fitted on that block of the linear residual's input alone, the other
        block's weights zero; ``rep_scale``: the standardised representation columns of the linear residual's
        input multiplied by it for the fit, see :data:`REP_SCALES`; ``penalty``: scikit-learn's inverse L2 penalty
        ``C``, see :data:`LINEAR_CS`; ``logit_scale``: the fitted logits multiplied by it, see
        :data:`LINEAR_TEMPERATURE`)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        features = self._sklearn_inputs(inputs, depth, self.labelled_[train_pos])
        columns = np.arange(features.shape[1])
        if kind != "all":
            n_rep = inputs.rep.shape[1]  # the linear residual's input: the hop features, then the representation
            columns = columns[:-n_rep] if kind == "hops" else columns[-n_rep:]
        scaler = StandardScaler().fit(features[:, columns])
        block = np.ones(len(columns))  # the scale of each standardised column in the fit
        if rep_scale != 1.0:
            if not self._reads_both_blocks(inputs, kind):
                raise ValueError("rep_scale applies to the linear residual's input read whole (kind='all').")
            block[-inputs.rep.shape[1]:] = rep_scale
        if isinstance(class_weight, np.ndarray):  # per class code, from a dict: the codes of these rows
            class_weight = {int(c): float(class_weight[c]) for c in np.unique(self.codes_[train_pos])}
        clf = LogisticRegression(C=penalty, max_iter=1000, class_weight=class_weight, random_state=random_state)
        with threadpool_limits(limits=LINEAR_FIT_BLAS_THREADS, user_api="blas"):
            x = scaler.transform(features[:, columns])
            clf.fit(x if rep_scale == 1.0 else x * block.astype(x.dtype), self.codes_[train_pos])
        weight = np.zeros((len(self.classes_), features.shape[1]), dtype=np.float32)
        bias = np.zeros(len(self.classes_), dtype=np.float32)
        # fold the column scales, the scaler and the logits' scale into the linear model
        coef = logit_scale * clf.coef_ * block / scaler.scale_
        intercept = logit_scale * clf.intercept_ - coef @ scaler.mean_
        if len(clf.classes_) == 2 and coef.shape[0] == 1:  # binary: logits [0, z]
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        weight[np.ix_(clf.classes_, columns)] = coef
        bias[clf.classes_] = intercept
        bias[np.setdiff1d(np.arange(len(self.classes_)), clf.classes_)] = -np.inf  # never predicted
        return {"weight": weight, "bias": bias}, None

    # ------------------------------------------------------------------------------------------------
    # prediction
    def _predict_proba(self, inputs: _Inputs, cells: np.ndarray, device: str = "auto",
                       members: list[_Member] | None = None) -> np.ndarray:
        """Class probabilities of ``cells``: the weighted mean over ``members`` (default :attr:`members_`),
        unsmoothed."""
        members = self.members_ if members is None else members
        proba = members[0].weight * self._member_proba(members[0], inputs, cells, device)
        for member in members[1:]:
            proba += member.weight * self._member_proba(member, inputs, cells, device)
        return proba

    def _choose_smoothing(self, proba: np.ndarray, inputs: _Inputs, val_pos: np.ndarray) -> tuple[float, dict]:
        """The smoothing strength of :data:`SMOOTHING_ALPHAS` whose smoothing of ``proba`` (every cell) has the
        lowest log-loss on the validation cells (ties: the weaker), and each one's loss."""
        cells, codes = self.labelled_[val_pos], self.codes_[val_pos]
        smoothed = smooth_probabilities_grid(proba, inputs.adjacency, SMOOTHING_ALPHAS, SMOOTHING_STEPS, rows=cells)
        tried = {alpha: log_loss(rows, codes) for alpha, rows in zip(SMOOTHING_ALPHAS, smoothed, strict=True)}
        return min(tried, key=tried.get), tried

    def _member_proba(self, member: _Member, inputs: _Inputs, cells: np.ndarray, device: str) -> np.ndarray:
        model, depth = member.model, member.n_layers
        if isinstance(model, dict):  # a logistic regression, as arrays; in chunks: the input rows are copies
            proba = np.empty((len(cells), len(self.classes_)), dtype=np.float32)
            for start in range(0, len(cells), LINEAR_CHUNK_CELLS):
                chunk = cells[start : start + LINEAR_CHUNK_CELLS]
                features = self._sklearn_inputs(inputs, depth, chunk)
                logits = torch.from_numpy(features @ model["weight"].T + model["bias"])
                proba[start : start + len(chunk)] = logits.softmax(1).numpy()
            return proba
        order = np.argsort(cells)
        batch_size = self.train_settings_["batch_size"]
        data = self._batches(inputs, cells[order], depth, y=None, shuffle=False, batch_size=batch_size, inference=True)
        try:
            outputs = predict_outputs(model, data, device=device)
        finally:
            model.cpu()  # members live on the CPU between calls, as training leaves them
        if isinstance(data, GraphBatches):
            returned = data.predict_order()
            position = np.searchsorted(cells[order], returned)
            reordered = torch.empty_like(outputs)
            reordered[torch.from_numpy(position)] = outputs
            outputs = reordered
        proba = np.empty((len(cells), outputs.shape[1]), dtype=np.float32)
        proba[order] = outputs.softmax(1).numpy()
        return proba

    def predict(
        self, adata: AnnData | None = None, *, min_gene_overlap: float = 0.5, device: str = "auto"
    ) -> pd.DataFrame:
        """Class probabilities of every cell of ``adata`` (default: the reference), as a DataFrame
        (cells x classes) indexed by ``obs_names``.

        ``adata``'s genes are matched to the model's by name (genes it lacks count as zero); below
        ``min_gene_overlap`` (the fraction of the model's genes present) it refuses. The graph is ``adata``'s
        own: predict on the whole slice (a view ``adata[mask]`` keeps only the edges among its cells, so the
        cells at its border lose neighbours), then select cells in the result."""
        if self.model_ is None:
            raise RuntimeError("The model is not trained: call train() first (or load a saved model).")
        adata = self.adata if adata is None else adata
        if adata is None:
            raise ValueError("Pass the AnnData to annotate.")
        self.gene_overlap(adata, min_gene_overlap)
        inputs = self._inputs(adata)
        proba = self._predict_proba(inputs, np.arange(adata.n_obs), device)
        if self.smoothing_ > 0:
            proba = smooth_probabilities(proba, inputs.adjacency, self.smoothing_, SMOOTHING_STEPS)
        return pd.DataFrame(proba, index=adata.obs_names, columns=self.classes_)

    def gene_overlap(self, adata: AnnData, min_gene_overlap: float = 0.5) -> dict[str, int]:
        """Counts of the model's genes found in ``adata`` (by ``var_names``); refuses below ``min_gene_overlap``
        of the model's genes."""
        if not 0.0 <= min_gene_overlap <= 1.0:
            raise ValueError(f"min_gene_overlap must be in [0, 1], got {min_gene_overlap}.")
        query_genes = pd.Index(np.asarray(adata.var_names, dtype=str))
        shared = int(query_genes.isin(self.genes_).sum())
        overlap = shared / len(self.genes_)
        if overlap < min_gene_overlap:
            raise ValueError(
                f"Only {shared} of the model's {len(self.genes_)} genes ({overlap:.0%}) are in adata.var_names, below "
                f"min_gene_overlap={min_gene_overlap:.0%}: check the gene identifiers (symbols vs ids, case) or "
                "lower min_gene_overlap knowingly."
            )
        return {
            "n_reference_genes": len(self.genes_),
            "n_query_genes": len(query_genes),
            "n_shared_genes": shared,
            "n_missing_filled_with_zeros": len(self.genes_) - shared,
            "n_query_only_ignored": len(query_genes) - shared,
        }

    # ------------------------------------------------------------------------------------------------
    # persistence: safetensors + JSON
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save to the folder ``path``: ``model.safetensors`` (weights) + ``config.json`` (everything else)."""
        if self.model_ is None:
            raise RuntimeError("Nothing to save: train() the model first.")
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise FileExistsError(f"{path} exists and is not empty: pass overwrite=True or choose another folder.")
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": _FORMAT_VERSION,
            "params": {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in self.params.items()},
            "classes": self.classes_.tolist(),
            "genes": self.genes_.tolist(),
            "members": [
                {"hidden": m.hidden, "n_layers": int(m.n_layers), "sklearn": isinstance(m.model, dict),
                 "inputs": m.inputs, "weight": m.weight}
                for m in self.members_
            ],
            "feature_dim": self.feature_dim_,
            "train_settings": self.train_settings_,
            "metrics": self.metrics_,
            "graph_params": self.graph_params_,
            "smoothing": self.smoothing_,
        }
        arrays = {"input_mean": self.input_mean_, "input_std": self.input_std_}
        for i, member in enumerate(self.members_):  # "member{i}.{name}": the member's arrays or state dict
            weights = member.model if isinstance(member.model, dict) else member.model.state_dict()
            arrays.update({f"member{i}.{k}": np.ascontiguousarray(_numpy(v)) for k, v in weights.items()})
        save_numpy(arrays, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps(config, indent=2, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RefineAnnotator:
        """Load a model saved with :meth:`save` (no reference AnnData needed to annotate new data)."""
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} is not a saved RefineAnnotator (needs config.json and model.safetensors).")
        config = json.loads((path / "config.json").read_text())
        version = config.get("format_version")
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(
                f"Unsupported format version {version} in {path}: saved by a newer spatial_refine? Upgrade it."
            )
        self = cls.__new__(cls)
        self.params = config["params"]
        if "conv" in self.params:  # saved before the SIGN encoder existed: the message-passing type
            self.params["encoder"] = self.params.pop("conv")
        self.adata = None
        self.classes_ = np.asarray(config["classes"], dtype=str)
        self.genes_ = np.asarray(config["genes"], dtype=str)
        self.feature_dim_ = config["feature_dim"]
        self.train_settings_ = config["train_settings"]
        self.metrics_ = config["metrics"]
        if "n_layers_tried" in self.metrics_:  # JSON keys are strings: depths are integers
            self.metrics_["n_layers_tried"] = {int(k): v for k, v in self.metrics_["n_layers_tried"].items()}
        self.graph_params_ = config["graph_params"]
        self.history_ = None
        self.pseudo_labelled_ = None  # positions in the reference, which a loaded model does not have
        self.smoothing_ = float(config.get("smoothing", 0.0))  # files before smoothing: none
        arrays = load_numpy(str(path / "model.safetensors"))
        if version == 1:  # a single model, its weights under "model."
            hidden = config.get("hidden", self.params["hidden"])  # files before hidden="auto": the parameter
            described = [{"hidden": hidden, "n_layers": config["n_layers"], "sklearn": config["sklearn"]}]
            prefixes = ["model."]
        else:
            described = config["members"]
            prefixes = [f"member{i}." for i in range(len(described))]
        self.members_ = []
        for member, prefix in zip(described, prefixes, strict=True):
            weights = {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
            if member["sklearn"]:
                model = weights
            else:
                model = self._build(len(self.genes_), member["n_layers"], member["hidden"])
                model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
                model.eval()
            # files of version 2 before ensemble selection: REFINE's linear head, equal weights
            weight = member.get("weight", 1.0 / len(described))
            self.members_.append(_Member(member["hidden"], member["n_layers"], model, member.get("inputs", "all"), weight))
        self.hidden_ = self.members_[0].hidden
        self.input_mean_, self.input_std_ = arrays["input_mean"], arrays["input_std"]
        return self

    def __repr__(self) -> str:
        state = "trained" if self.model_ is not None else "untrained"
        return (
            f"RefineAnnotator(strategy={self.params['strategy']!r}, labels_key={self.params['labels_key']!r}, "
            f"classes={len(self.classes_)}, genes={len(self.genes_)}, {state})"
        )


#: labels that usually are missing values turned into strings (``.astype(str)`` of NaN or None)
_MISSING_STRINGS = {"nan", "NaN", "None", "<NA>", ""}


def _classes(values: np.ndarray, labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The class names (strings) and each labelled cell's class index. Sorted as text, or numerically when the
    column has a numeric dtype (``"2"`` before ``"10"``); categorical and string columns sort as text (their
    category order is not used: it would change existing models' class order)."""
    classes, codes = np.unique(values, return_inverse=True)
    if pd.api.types.is_numeric_dtype(labels.dtype) and not pd.api.types.is_bool_dtype(labels.dtype):
        order = np.argsort([float(c) for c in classes], kind="stable")
        classes, codes = classes[order], np.argsort(order)[codes]
    return classes, codes


def _confident_per_class(proba: np.ndarray, fraction: float, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows to pseudo-label and their classes: in each predicted class (the argmax of ``proba``), the
    ``ceil(fraction * its rows)`` of highest probability (ties: the earlier row); if that makes more than
    ``max_rows``, each class's number times ``max_rows / total``, rounded down. Rows in increasing order."""
    predicted, confidence = proba.argmax(1), proba.max(1)
    codes = np.unique(predicted)
    wanted = np.array([int(np.ceil(fraction * np.sum(predicted == code))) for code in codes])
    if wanted.sum() > max_rows:
        wanted = (wanted * max_rows) // wanted.sum()
    chosen = []
    for code, count in zip(codes, wanted, strict=True):
        rows = np.flatnonzero(predicted == code)
        order = np.argsort(-confidence[rows], kind="stable")
        chosen.append(rows[order[:count]])
    rows = np.sort(np.concatenate(chosen))
    return rows, predicted[rows]


def _halves(val_pos: np.ndarray, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random halves of the validation cells, as positions into ``val_pos``."""
    order = np.random.default_rng(random_state).permutation(len(val_pos))
    return order[: len(order) // 2], order[len(order) // 2 :]


def _align_genes(matrix: Any, genes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Columns of ``matrix`` reordered to ``reference``; genes the query lacks are zeros."""
    if len(set(genes)) != len(genes):
        raise ValueError("adata.var_names has duplicates: make them unique (adata.var_names_make_unique()).")
    position = pd.Index(genes).get_indexer(reference)
    present = position >= 0
    out = np.zeros((matrix.shape[0], len(reference)), dtype=np.float32)
    out[:, present] = _dense(matrix[:, position[present]])
    return out


def _graph_params(adata: AnnData, graph_key: str) -> dict | None:
    prefix = graph_key.removesuffix("_connectivities")
    info = adata.uns.get(f"{prefix}_neighbors")
    return None if info is None else dict(info.get("params", {}))


def _temperature_scale(proba: np.ndarray, codes: np.ndarray) -> float:
    """The factor ``s`` on the logits (``log proba``) that minimises the log-loss of ``softmax(s * log proba)``
    against ``codes`` (temperature scaling, Guo et al. 2017; ``s = 1 / T``), searched in [0.1, 20]."""
    from scipy.optimize import minimize_scalar

    logits = np.log(np.clip(proba.astype(np.float64), 1e-12, None))

    def loss(log_s: float) -> float:
        z = np.exp(log_s) * logits
        z -= z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(codes)), codes]))

    return float(np.exp(minimize_scalar(loss, bounds=(np.log(0.1), np.log(20.0)), method="bounded").x))


def _macro_f1(codes: np.ndarray, proba: np.ndarray) -> float:
    """Macro-F1 of the most probable class of each row of ``proba`` against ``codes`` (over the classes in
    ``codes``)."""
    from sklearn.metrics import f1_score

    return float(f1_score(codes, proba.argmax(1), labels=np.unique(codes), average="macro"))


def _metrics(codes: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = proba.argmax(1)
    return {
        "val_loss": log_loss(proba, codes),
        "val_balanced_loss": log_loss(proba, codes, balanced=True),
        "val_accuracy": float(accuracy_score(codes, predicted)),
        "val_macro_f1": float(f1_score(codes, predicted, average="macro", labels=np.unique(codes), zero_division=0)),
    }


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in config.json")
