"""Benchmark: scGPT embedding throughput and memory, length-bucketed vs pad-to-longest batching.

A full-size random-weight checkpoint in the official format (whole-human sizes: 512-d, 12 layers,
8 heads, d_hid 512, 60,697 tokens built from the real default census vocabulary plus the three special
tokens) embeds real spatial cells (mouse symbols upper-cased). Random weights cost exactly what real ones
do: the computation is the same, only the numbers mean nothing.

Each configuration runs in a fresh subprocess so its memory is measured alone: peak RSS above the RSS
just before embedding (sampled every 5 ms; CPU), or ``torch.cuda.max_memory_allocated`` (CUDA).

    python benchmarks/bench_scgpt_embed.py --n-cells 1000 --batch-sizes 32 64 --device cpu
    python benchmarks/bench_scgpt_embed.py --n-cells 20000 --batch-sizes 64 256 --device cuda
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark this checkout's code, not an installed copy
DEFAULT_DATA = Path(os.environ.get("SPATIAL_REFINE_DATA_DIR", ROOT.parent / "shared" / "data"))
MODES = {"bucketed": True, "pad-to-longest": False}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` is the largest value seen."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def worker(spec: dict) -> dict:
    """One configuration, in its own process."""
    import anndata as ad
    import torch

    from spatial_refine.scgpt import CellTokenizer, embed_matrix, load_pretrained, match_genes, resolve_device

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = resolve_device(spec["device"])
    adata = ad.read_h5ad(spec["cells"])
    t0 = time.perf_counter()
    pre = load_pretrained(spec["model_dir"])
    load_s = time.perf_counter() - t0
    match = match_genes(list(adata.var_names), pre.vocab, "upper")
    tok = CellTokenizer(pre.vocab.cls_id, pre.config.pad_value, spec["max_length"], random_state=0)
    opts = {
        "pad_id": pre.vocab.pad_id,
        "batch_size": spec["batch_size"],
        "device": device,
        "length_bucketing": spec["bucketing"],
        "progress": False,
    }
    embed_matrix(pre.model, adata.X[:16], match.columns, match.token_ids, tok, **opts)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        base = _rss_bytes()
        t0, c0 = time.perf_counter(), time.process_time()
        res = embed_matrix(pre.model, adata.X, match.columns, match.token_ids, tok, **opts)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    np.save(spec["out"], res.embeddings)
    return {
        "seconds": seconds,
        "cells_per_s": adata.n_obs / seconds,
        "cpu_seconds": cpu_seconds,
        "cells_per_cpu_s": adata.n_obs / cpu_seconds,
        "tokens": res.n_tokens,
        "positions": res.n_positions,
        "padding_overhead": res.n_positions / res.n_tokens - 1,
        "rss_peak_delta_mb": (rss.peak - base) / 2**20,
        "rss_peak_mb": rss.peak / 2**20,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan"),
        "load_s": load_s,
        "genes_matched": match.n_matched,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def machine_info(device: str) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average_at_start": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def prepare(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path, str]:
    """Write the full-size checkpoint (unless given) and the cell subset; return their paths."""
    import anndata as ad

    from spatial_refine.scgpt import write_random_checkpoint

    model_dir = args.checkpoint_dir
    if model_dir is None or not (model_dir / "best_model.pt").is_file():
        census = json.loads((args.data_dir / "scgpt" / "vocab_default_census.json").read_text())
        genes = sorted(census, key=census.get)
        model_dir = model_dir or tmp / "scGPT_random_whole_human_size"
        t0 = time.perf_counter()
        write_random_checkpoint(model_dir, genes, seed=0)
        print(
            f"wrote full-size random checkpoint ({len(genes) + 3} tokens) in {time.perf_counter() - t0:.1f} s"
        )
    backed = ad.read_h5ad(args.data_dir / "spatial" / args.dataset, backed="r")
    n = min(args.n_cells, backed.n_obs)
    rows = np.sort(np.random.default_rng(args.seed).choice(backed.n_obs, size=n, replace=False))
    cells = backed[rows].to_memory()
    backed.file.close()
    path = tmp / "cells.h5ad"
    cells.write_h5ad(path)
    nnz = np.diff(cells.X.tocsr().indptr)
    desc = (
        f"{args.dataset}: {n} random cells x {cells.n_vars} genes, expressed genes per cell "
        f"min {nnz.min()} / median {int(np.median(nnz))} / max {nnz.max()}"
    )
    return model_dir, path, desc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-cells", type=int, default=1000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--max-length", type=int, default=1200)
    parser.add_argument("--dataset", default="seqfish_lohoff_embryo_3embryos.h5ad")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=None, help="reuse / keep the random checkpoint"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="output prefix (default results/scgpt_embed_<device>)"
    )
    parser.add_argument("--note", default="", help="free text added to the markdown (e.g. machine load)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    out = args.out or ROOT / "benchmarks" / "results" / f"scgpt_embed_{args.device.split(':')[0]}"
    info = machine_info(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        model_dir, cells, data_desc = prepare(args, tmp)
        print(data_desc)
        for bs in args.batch_sizes:
            for mode, bucketing in MODES.items():
                spec = {
                    "cells": str(cells),
                    "model_dir": str(model_dir),
                    "batch_size": bs,
                    "bucketing": bucketing,
                    "device": args.device,
                    "threads": args.threads,
                    "max_length": args.max_length,
                    "out": str(tmp / f"emb_{bs}_{mode}.npy"),
                }
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    # this checkout first, the caller's PYTHONPATH kept (packages installed beside it)
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(
                        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)},
                )
                if proc.returncode:
                    sys.exit(f"worker failed ({bs}, {mode}):\n{proc.stderr}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r.update(batch_size=bs, mode=mode, n_cells=int(np.load(spec["out"]).shape[0]))
                rows.append(r)
                print(
                    f"batch {bs:4d} {mode:15s} {r['cells_per_s']:8.1f} cells/s  padding +{r['padding_overhead']:.0%}"
                    f"  peak RSS +{r['rss_peak_delta_mb']:.0f} MB  (total {r['rss_peak_mb']:.0f} MB)"
                )
            a, b = (np.load(tmp / f"emb_{bs}_{m}.npy") for m in MODES)
            diff = float(np.abs(a - b).max())
            fast, slow = (next(r for r in rows[-2:] if r["mode"] == m) for m in MODES)
            ratio = fast["cells_per_s"] / slow["cells_per_s"]
            cpu_ratio = fast["cells_per_cpu_s"] / slow["cells_per_cpu_s"]
            for r in rows[-2:]:
                r.update(
                    speedup_bucketed=ratio, cpu_speedup_bucketed=cpu_ratio, max_abs_diff_vs_other_mode=diff
                )
            print(
                f"batch {bs}: bucketed / pad-to-longest throughput = {ratio:.2f}x wall-clock, "
                f"{cpu_ratio:.2f}x per CPU-second (max |diff| {diff:.1e})"
            )
    for r in rows:
        r.update(info)
    write_results(out, rows, info, data_desc, args)


def write_results(out: Path, rows: list[dict], info: dict, data_desc: str, args: argparse.Namespace) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [
        "device", "threads", "batch_size", "mode", "n_cells", "seconds", "cells_per_s", "speedup_bucketed",
        "cpu_seconds", "cells_per_cpu_s", "cpu_speedup_bucketed", "tokens", "positions", "padding_overhead",
        "rss_peak_delta_mb", "rss_peak_mb", "cuda_peak_mb", "max_abs_diff_vs_other_mode", "load_s", *info,
    ]  # fmt: skip
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    lines = [
        "# scGPT embedding benchmark",
        "",
        f"Run {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} with "
        f"`python benchmarks/bench_scgpt_embed.py {shlex.join(sys.argv[1:])}`.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "Model: random weights in the official format at whole-human size (512-d, 12 layers, 8 heads, d_hid 512, "
        f"60,697 tokens; checkpoint load + sha256 {rows[0]['load_s']:.1f} s). Data: {data_desc}; "
        f"{rows[0]['genes_matched']} genes matched (upper-cased mouse symbols); max_length {args.max_length}; "
        f"device {rows[0]['device']}, torch threads {rows[0]['threads']}.",
        "",
        "`bucketed`: cells sorted by length within chunks of 32 x batch size, batches of similar length. "
        "`pad-to-longest`: batches of consecutive cells padded to their longest (scGPT's own batching). "
        "Padding = computed positions / real tokens - 1. Cells per CPU-second uses the process's CPU "
        "time, which a busy shared machine disturbs less than wall-clock time. Peak RSS + = resident memory above the level before "
        "embedding (model and data already loaded), sampled every 5 ms; total = peak RSS of the process.",
        "",
        "| batch | mode | cells/s | time (s) | cells per CPU-s | padding | peak RSS + (MB) "
        "| peak RSS total (MB) | CUDA peak (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cuda = "-" if np.isnan(r["cuda_peak_mb"]) else f"{r['cuda_peak_mb']:.0f}"
        lines.append(
            f"| {r['batch_size']} | {r['mode']} | {r['cells_per_s']:.1f} | {r['seconds']:.1f} | "
            f"{r['cells_per_cpu_s']:.1f} | +{r['padding_overhead']:.0%} | {r['rss_peak_delta_mb']:.0f} | {r['rss_peak_mb']:.0f} | {cuda} |"
        )
    if args.note:
        lines += ["", f"Note: {args.note}"]
    lines += ["", "Throughput ratio bucketed / pad-to-longest (same run, same cells, same embeddings):", ""]
    for bs in dict.fromkeys(r["batch_size"] for r in rows):
        r = next(x for x in rows if x["batch_size"] == bs)
        lines.append(
            f"- batch {bs}: **{r['speedup_bucketed']:.2f}x** wall-clock, {r['cpu_speedup_bucketed']:.2f}x per "
            f"CPU-second; max |difference| between the two modes' embeddings "
            f"{r['max_abs_diff_vs_other_mode']:.1e}"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
