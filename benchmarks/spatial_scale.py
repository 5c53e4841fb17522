"""Scale benchmark of REFINE on the synthetic tissue: time per phase and peak memory at 10k-1M cells (CPU or GPU).

For each size, in a fresh subprocess (so peak memory is that run's alone):

1. ``data``: :func:`spatial_refine.datasets.synthetic_tissue` (log-normalised sparse expression, 100
   genes, 8 cell types, 5 niches);
2. ``graph``: :func:`spatial_refine.pp.spatial_neighbors` (squidpy kNN, 10 neighbours);
3. ``rep``: the frozen representation, a fixed Gaussian random projection of the log expression to 32
   dimensions (``X @ R``, sparse times dense, O(nnz); a stand-in for a foundation-model embedding that
   costs nothing to compute);
4. ``train``: ``RefineAnnotator(strategy="refine", encoder=..., n_layers=2, hidden=64)`` on ``obs["niche"]``
   (a label that needs the neighbourhood), 10% of the cells labelled (capped), for a FIXED number of
   epochs with no early stopping (``patience = max_epochs``): the point is the cost of an epoch, not the
   best model. REFINE's default start choice (``start="auto"``) trains a linear probe, a from-scratch
   model and two REFINE runs of that many epochs each, then (``refit=True``, the default since 2026-12-03)
   trains the kept run again on every labelled cell, its start too, for the epochs it kept, all included in
   the time (with a validation pass per epoch of the first four); for SIGN the hop aggregation (sparse
   products) is included too;
5. ``predict``: class probabilities of every cell, and accuracy on the unlabelled cells.

Each run is ``SIZE:ENCODER:BATCH``. ``ENCODER`` is ``sign`` (the default residual encoder: rows of
precomputed hop features, minibatches of 256 labelled cells), ``linear`` (the linear SIGN residual,
``hidden=None``: one logistic regression on the hop features and the representation, solved by L-BFGS; the
default ``hidden="auto"``, run as ``auto``, fits it next to ``sign``) or ``sage``
(torch-geometric GraphSAGE, the message-passing alternative). ``BATCH`` picks the graph regime of ``sage``: ``auto`` (the library's
choice: full-batch up to 100,000 cells, exact k-hop subgraph minibatches of 1,024 labelled seeds above),
``full`` or ``minibatch`` (forced), so each choice can be compared with its alternative in the same run.

``--new-slice``: the tissue is cut in two slices at the median x coordinate (``obs["slice"]``, one graph per
slice: ``library_key``), the labelled cells are drawn from the left one only, and the right one is a new slice,
unlabelled, that REFINE's default self-trains on (``train(self_training="auto")``: the confident half of each
predicted class there, at most 20,000 cells, joins the refit). Encoder ``auto_plain`` is ``auto`` with
``self_training=None``, to compare in the same run; ``query acc`` is the accuracy on the right slice.

``--device``: where ``train`` and ``predict`` run (``cpu``, the default, or ``cuda``: the data, the graph and the
representation are built on the CPU either way). On a GPU the peak of ``torch.cuda.max_memory_allocated`` over
train and predict is reported too, and the CUDA context is created before any timer starts.

Imports and squidpy's first-call compilation (a 200-cell warm-up graph) happen before any timer starts.
Peak memory is the process's peak resident set size (``ru_maxrss``) and, per phase, the maximum of the RSS
sampled every 10 ms by a background thread (psutil), both in GiB.

    python benchmarks/spatial_scale.py                      # 10k, 100k, 1M + comparisons
    python benchmarks/spatial_scale.py --sizes 10000 100000 --epochs 5
    python benchmarks/spatial_scale.py --device cuda --stem spatial_scale_gpu
"""

from __future__ import annotations

import argparse
import csv
import inspect
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # run against this checkout, not an installed copy
    sys.path.insert(0, str(ROOT))
PHASES = ("data", "graph", "rep", "train", "predict")
GiB = 1024**3


class PeakSampler:
    """Samples this process's RSS in a background thread; :meth:`phase` returns the peak since the last call.

    Parameters
    ----------
    interval
        Seconds between samples.
    """

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._peak = self._process.memory_info().rss
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._process.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def phase(self) -> float:
        """Peak RSS (GiB) since the previous call, then restart from the current RSS."""
        rss = self._process.memory_info().rss
        with self._lock:
            peak, self._peak = max(self._peak, rss), rss
        return peak / GiB

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


#: benchmark encoder -> (annotator encoder, hidden). "linear": the linear SIGN residual, a logistic regression
#: solved by L-BFGS (epochs unused); "auto": the package default, four SIGN fits weighted by ensemble selection
ENCODER_OPTIONS = {"sign": ("sign", 64), "linear": ("sign", None), "auto": ("sign", "auto"), "sage": ("sage", 64),
                   "auto_plain": ("sign", "auto"), "auto_unsmoothed": ("sign", "auto")}
#: ``train(self_training=...)`` of an encoder spec (default: the package default, ``"auto"``)
SELF_TRAINING = {"auto_plain": None}
#: ``train(smoothing=...)`` of an encoder spec (default: the package default, ``"auto"``)
SMOOTHING = {"auto_unsmoothed": None}


def run_one(
    n_cells: int, batch: str, epochs: int, label_fraction: float, label_cap: int, seed: int, encoder: str = "sign",
    new_slice: bool = False, device: str = "cpu",
) -> dict:
    """One size, one training regime; returns times (s), peak memory (GiB) and accuracy.

    Parameters
    ----------
    n_cells
        Number of cells of the synthetic tissue.
    batch
        ``"auto"``, ``"full"`` or ``"minibatch"`` (1,024 labelled seeds per batch; message passing only).
    encoder
        ``"sign"``, ``"sage"``, ``"linear"`` (SIGN with the linear residual, ``hidden=None``) or ``"auto"``
        (SIGN with ``hidden="auto"``: the network, the linear residual and its two one-block limits, weighted by
        ensemble selection on validation; ``"auto_plain"``: the same without self-training, ``"auto_unsmoothed"``
        without the smoothing of the predictions over the graph).
    epochs
        Fixed number of training epochs (no early stopping).
    label_fraction, label_cap
        Fraction of cells labelled, at most ``label_cap`` cells.
    seed
        Seed of the tissue, the labelled cells, the projection and training.
    new_slice
        Cut the tissue in two slices, label cells of the left one only (see the module docstring).
    device
        Where training and prediction run: ``"cpu"`` or ``"cuda"``.
    """
    import numpy as np
    import sklearn.model_selection  # noqa: F401  (imports are not part of any phase's time)
    import squidpy  # noqa: F401
    import torch
    import torch_geometric.nn  # noqa: F401

    import spatial_refine as sr
    from spatial_refine.annotator import FULL_BATCH_MAX_CELLS
    from spatial_refine.datasets import synthetic_tissue

    if not Path(sr.__file__).resolve().is_relative_to(ROOT):
        raise RuntimeError(f"imported {sr.__file__}, not this checkout's package")

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    sr.pp.spatial_neighbors(synthetic_tissue(200, random_state=seed), n_neighs=10)  # warm-up: JIT compilation
    cuda = torch.device(device).type == "cuda"
    if cuda:  # the CUDA context and cuBLAS handle are made here, outside every timer
        torch.ones(8, 8, device=device).matmul(torch.ones(8, 8, device=device)).sum().item()
    sampler = PeakSampler()
    baseline = sampler.phase()
    times, peaks = {}, {}

    def mark(name: str, start: float) -> None:
        times[name] = time.perf_counter() - start
        peaks[name] = sampler.phase()
        print(f"  n={n_cells:>9,} {encoder} {batch:9s} {name:8s} {times[name]:8.1f} s  peak {peaks[name]:.2f} GiB", flush=True)

    start = time.perf_counter()
    adata = synthetic_tissue(n_cells, values="log", random_state=seed)
    mark("data", start)

    query = np.zeros(n_cells, dtype=bool)
    if new_slice:
        x = adata.obsm["spatial"][:, 0]
        query = x >= np.median(x)
        adata.obs["slice"] = np.where(query, "query", "reference")
    start = time.perf_counter()
    sr.pp.spatial_neighbors(adata, n_neighs=10, library_key="slice" if new_slice else None)
    n_edges = int(adata.obsp["spatial_connectivities"].nnz)
    del adata.obsp["spatial_distances"]  # not used by the annotator
    mark("graph", start)

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    projection = rng.normal(0.0, 1.0 / np.sqrt(32), size=(adata.n_vars, 32)).astype(np.float32)
    adata.obsm["X_rp"] = np.asarray(adata.X @ projection, dtype=np.float32)
    mark("rep", start)

    n_labelled = min(round(label_fraction * n_cells), label_cap)
    labelled = np.zeros(n_cells, dtype=bool)
    labelled[rng.choice(np.flatnonzero(~query), n_labelled, replace=False)] = True
    truth = adata.obs["niche"].astype(str).to_numpy()
    adata.obs["train_label"] = adata.obs["niche"].astype(object).where(labelled)

    batch_size: int | str = {"auto": "auto", "full": None, "minibatch": 1024}[batch]
    regime = batch if batch != "auto" else ("full" if n_cells <= FULL_BATCH_MAX_CELLS else "minibatch")
    annotator_encoder, hidden = ENCODER_OPTIONS[encoder]
    if annotator_encoder == "sign":
        regime = "rows"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model = sr.RefineAnnotator(
        adata, "train_label", rep_key="X_rp", strategy="refine", encoder=annotator_encoder, n_layers=2, hidden=hidden
    )
    model.train(max_epochs=epochs, patience=epochs, batch_size=batch_size, device=device, random_state=seed,
                self_training=SELF_TRAINING.get(encoder, "auto"), smoothing=SMOOTHING.get(encoder, "auto"))
    mark("train", start)

    start = time.perf_counter()
    proba = model.predict(device=device)
    predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
    mark("predict", start)
    sampler.close()

    return {
        "n_cells": n_cells,
        "device": device,
        "encoder": encoder,
        "batch": batch,
        "regime": regime,
        "n_edges": n_edges,
        "n_labelled": n_labelled,
        "epochs": epochs,
        "epochs_run": len(model.history_.train_loss) if model.history_ is not None else 0,  # 0: solved, not trained
        **{f"time_{p}_s": round(times[p], 2) for p in PHASES},
        "time_total_s": round(sum(times.values()), 2),
        "time_train_predict_s": round(times["train"] + times["predict"], 2),
        **{f"peak_{p}_gib": round(peaks[p], 3) for p in PHASES},
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB, 3),
        "baseline_rss_gib": round(baseline, 3),
        "gpu_peak_gib": round(torch.cuda.max_memory_allocated() / GiB, 3) if cuda else None,
        "val_accuracy": round(model.metrics_["val_accuracy"], 4),
        "unlabelled_accuracy": round(float((predicted[~labelled] == truth[~labelled]).mean()), 4),
        "new_slice": new_slice,
        "n_pseudo_labelled": model.metrics_.get("n_pseudo_labelled", 0),
        "query_accuracy": round(float((predicted[query] == truth[query]).mean()), 4) if new_slice else None,
        "ensemble_weights": " ".join(f"{k}:{w:g}" for k, w in model.metrics_.get("ensemble_weights", {}).items()),
        "smoothing": model.smoothing_,
    }


def machine(device: str = "cpu") -> dict:
    """CPU, GPU (where ``device`` is CUDA), cores, memory, threads and library versions of this run."""
    import psutil
    import torch
    import torch_geometric

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "2")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.device(device).type == "cuda" else None,
    }


def write_results(rows: list[dict], info: dict, stem: str) -> None:
    """Write ``{stem}.csv`` (one row per run) and ``{stem}.md`` (tables + machine) under benchmarks/results."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    gpu = info.get("gpu")
    lines = [
        f"# REFINE scale benchmark (synthetic tissue, {'GPU' if gpu else 'CPU'})",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM (shared), "
        + (f"GPU {gpu} (train and predict on it; data, graph and representation on the CPU), " if gpu else "")
        + f"{info['threads']} torch/OMP threads; Python {info['python']}, torch {info['torch']}, "
        f"torch-geometric {info['torch_geometric']} (no pyg-lib / torch-sparse). Run {info['date']}.",
        "",
        f"Protocol: `{('python benchmarks/spatial_scale.py ' + info['argv']).strip()}`. kNN graph (10 neighbours), frozen "
        "representation = fixed Gaussian random projection of log expression to 32 dims, REFINE "
        f"(2 hops, hidden 64; encoder SIGN = the default, or GraphSAGE) on `niche`, {info['label_fraction']:.0%} of "
        f"cells labelled (cap {info['label_cap']:,}; 80/20 train/validation), {info['epochs']} epochs with no early "
        "stopping for each of the four runs of the default start choice (linear probe, from-scratch model, and "
        "REFINE from each), validation every epoch, "
        + ("then the kept run and its start trained again on all labelled cells for the epochs they kept (the "
           "default `refit=True`), " if info.get("refit") is True else "")
        + "then predict every cell; losses weighted with the default "
        f"`class_weight=\"{info.get('class_weight', 'balanced')}\"`. Encoder `linear` (where run): the "
        "linear SIGN residual (`hidden=None`, 2 hops), a logistic regression solved by L-BFGS on the split, then refitted on all labelled cells, no epochs "
        "(since 2026-12-04 it also chooses the penalty of its frozen block among 5 scales: by 5-fold cross-validation "
        "up to 10,000 labelled cells, 25 more fits, on the split above, 4 more); the "
        "default `hidden=\"auto\"` (encoder `auto`) fits it, the same regression on the hop features alone and on the frozen "
        "representation alone, and `sign` twice (cross-fitted: each run validated on one half of the validation cells, "
        "scored on the other), then weights them by greedy ensemble selection on the validation cells and "
        "predicts the weighted mean of the kept fits' probabilities (the weights are listed). Each row is a fresh process. "
        "Times in seconds, memory = peak RSS in GiB (per phase: sampled every 10 ms)"
        + ("; GPU GiB = peak `torch.cuda.max_memory_allocated` over train and predict. " if gpu else ". ")
        + "Load average (1 min) before / after each run is given: other engineers share the machine.",
        "",
        "| cells | edges | labelled | encoder | batch | regime | data s | graph s | rep s | train s | predict s | "
        "train+predict s | peak GiB | " + ("GPU GiB | " if gpu else "") + "unlabelled acc | load before/after |",
        "|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else "") + "---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_cells']:,} | {r['n_edges']:,} | {r['n_labelled']:,} | {r['encoder']} | {r['batch']} | {r['regime']} | "
            f"{r['time_data_s']:.1f} | {r['time_graph_s']:.1f} | {r['time_rep_s']:.2f} | {r['time_train_s']:.1f} | "
            f"{r['time_predict_s']:.1f} | {r['time_train_predict_s']:.1f} | {r['peak_rss_gib']:.2f} | "
            + (f"{r['gpu_peak_gib']:.2f} | " if gpu else "")
            + f"{r['unlabelled_accuracy']:.3f} | {r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    weights = [r for r in rows if r.get("ensemble_weights")]
    if weights:
        lines += ["", "Ensemble weights of the `auto` runs: " + "; ".join(
            f"{r['n_cells']:,} cells: {r['ensemble_weights']}" for r in weights) + "."]
    smoothed = [r for r in rows if r.get("smoothing") is not None and r["encoder"].startswith("auto")]
    if smoothed:
        lines += ["", "Smoothing of the predictions over the graph (`smoothing_`, 0: none; `auto_unsmoothed`: "
                  "`train(smoothing=None)`): " + "; ".join(
                      f"{r['n_cells']:,} cells {r['encoder']}: {r['smoothing']:g}" for r in smoothed) + "."]
    lines += [
        "",
        "Peak RSS per phase (GiB):",
        "",
        "| cells | encoder | batch | " + " | ".join(PHASES) + " |",
        "|---:|---|---|" + "---:|" * len(PHASES),
    ]
    for r in rows:
        lines.append(
            f"| {r['n_cells']:,} | {r['encoder']} | {r['batch']} | "
            + " | ".join(f"{r[f'peak_{p}_gib']:.2f}" for p in PHASES) + " |"
        )
    auto = {r["n_cells"]: r for r in rows if r["batch"] == "auto" and r["encoder"] == "sign"}
    sizes = sorted(auto)
    if len(sizes) > 1:
        lines += ["", "Scaling of the default (SIGN; ratio to the previous size; linear = the cell ratio):", ""]
        lines += ["| from -> to | cells x | train+predict x | train x | predict x | peak RSS x |", "|---|---:|---:|---:|---:|---:|"]
        for a, b in itertools.pairwise(sizes):
            ra, rb = auto[a], auto[b]
            lines.append(
                f"| {a:,} -> {b:,} | {b / a:.0f} | {rb['time_train_predict_s'] / ra['time_train_predict_s']:.1f} | "
                f"{rb['time_train_s'] / ra['time_train_s']:.1f} | {rb['time_predict_s'] / ra['time_predict_s']:.1f} | "
                f"{rb['peak_rss_gib'] / ra['peak_rss_gib']:.1f} |"
            )
    others = [o for o in rows if o["n_cells"] in auto and o is not auto[o["n_cells"]]]
    if others:
        lines += ["", "The default against the alternatives at the same size (other / default):", ""]
        lines += ["| cells | other | train x | predict x | peak RSS x | unlabelled acc (default / other) |",
                  "|---:|---|---:|---:|---:|---|"]
        for o in sorted(others, key=lambda item: item["n_cells"]):
            r = auto[o["n_cells"]]
            lines.append(
                f"| {o['n_cells']:,} | {o['encoder']} {o['batch']} ({o['regime']}) | {o['time_train_s'] / r['time_train_s']:.2f} | "
                f"{o['time_predict_s'] / r['time_predict_s']:.2f} | {o['peak_rss_gib'] / r['peak_rss_gib']:.2f} | "
                f"{r['unlabelled_accuracy']:.3f} / {o['unlabelled_accuracy']:.3f} |"
            )
    adapted = [r for r in rows if r.get("new_slice")]
    if adapted:
        lines += ["", "New slice (`--new-slice`): the tissue cut in two at the median x, labels from the left half only, "
                  "the right half unlabelled, one graph per half; `auto` self-trains on it (the default), `auto_plain` "
                  "does not:", "", "| cells | encoder | pseudo-labelled | train s | predict s | peak GiB | query acc |",
                  "|---:|---|---:|---:|---:|---:|---:|"]
        for r in adapted:
            lines.append(f"| {r['n_cells']:,} | {r['encoder']} | {r['n_pseudo_labelled']:,} | {r['time_train_s']:.1f} | "
                         f"{r['time_predict_s']:.1f} | {r['peak_rss_gib']:.2f} | {r['query_accuracy']:.3f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--compare",
        type=str,
        nargs="*",
        default=["10000:sage:auto", "100000:sage:auto", "100000:sage:minibatch"],
        help="extra runs SIZE:ENCODER:BATCH (sign, linear, auto or sage; auto, full or minibatch) to compare with the default",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--label-cap", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stem", default="spatial_scale", help="file name stem under benchmarks/results")
    parser.add_argument("--new-slice", action="store_true", help="label one half of the tissue, self-train on the other")
    parser.add_argument("--device", default="cpu", help="where train and predict run: cpu (default) or cuda")
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:  # child process: one run, JSON on the last line of stdout
        size, encoder, batch = args.worker.split(":")
        result = run_one(int(size), batch, args.epochs, args.label_fraction, args.label_cap, args.seed, encoder,
                         args.new_slice, args.device)
        print("RESULT " + json.dumps(result), flush=True)
        return

    runs = [(n, "sign", "auto") for n in args.sizes]
    for item in args.compare:
        size, encoder, batch = item.split(":")
        runs.append((int(size), encoder, batch))
    runs.sort()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    import spatial_refine as sr  # each run's own process imports it again (memory is per run)
    from spatial_refine._device import resolve_device

    resolve_device(args.device)  # an unknown or absent device: the library's clear error, before any run
    info = {
        **machine(args.device),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "argv": " ".join(sys.argv[1:]),
        "epochs": args.epochs,
        "label_fraction": args.label_fraction,
        "label_cap": args.label_cap,
        "class_weight": inspect.signature(sr.RefineAnnotator.train).parameters["class_weight"].default,
        "refit": inspect.signature(sr.RefineAnnotator.train).parameters["refit"].default,
    }
    rows = []
    for size, encoder, batch in runs:
        load_before = os.getloadavg()[0]
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", f"{size}:{encoder}:{batch}", "--epochs",
                   str(args.epochs), "--label-fraction", str(args.label_fraction), "--label-cap",
                   str(args.label_cap), "--seed", str(args.seed), "--device", args.device,
                   *(["--new-slice"] if args.new_slice else [])]
        proc = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
        out = proc.stdout.splitlines()
        print("\n".join(line for line in out if not line.startswith("RESULT ")), flush=True)
        if proc.returncode != 0 or not out or not out[-1].startswith("RESULT "):
            print(f"run {size}:{encoder}:{batch} failed with exit code {proc.returncode}", file=sys.stderr)
            continue
        row = json.loads(out[-1].removeprefix("RESULT "))
        row["load_before"], row["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
        rows.append(row)
        write_results(rows, info, args.stem)  # after every run: a later run that fails or is stopped loses only itself
    if not rows:
        sys.exit("no run succeeded")
    keys = ["n_cells", "encoder", "batch", "regime", *[f"time_{p}_s" for p in PHASES], "peak_rss_gib", "unlabelled_accuracy"]
    print("\t".join(keys))
    for r in rows:
        print("\t".join(str(r[k]) for k in keys))
    print(f"wrote {RESULTS / args.stem}.md and .csv")


if __name__ == "__main__":
    main()
