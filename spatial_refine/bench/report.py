"""Benchmark tables (markdown + CSV) and plots from the per-run records of :func:`~spatial_refine.bench.runner.run_task`."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import METRICS

__all__ = ["machine_info", "summarize", "to_markdown", "write_report"]

_LABELS = {
    "accuracy": "accuracy %",
    "macro_f1": "macro-F1 %",
    "weighted_f1": "weighted-F1 %",
    "auc_ovr": "AUC (OvR) %",
    "min_class_accuracy": "min class acc %",
}


def summarize(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1; 0 with a single seed) over seeds, per task and strategy, in %."""
    frame = pd.DataFrame(records)
    rows = []
    for (task, strategy), group in frame.groupby(["task", "strategy"], sort=False):
        row = {"task": task, "strategy": strategy, "n_seeds": len(group),
               "n_diverged": int((~np.isfinite(group["accuracy"].to_numpy(dtype=float))).sum())}
        for metric in METRICS:
            values = 100.0 * group[metric].to_numpy(dtype=float)
            row[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            # one seed has no spread: NaN (shown as the mean alone), not a misleading 0
            row[f"{metric}_std"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else float("nan")
        row["train_seconds_mean"] = float(group["train_seconds"].mean())
        row["trainable_params"] = int(group["trainable_params"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(summary: pd.DataFrame, published: dict[str, float] | None = None) -> str:
    """A markdown table: one row per strategy, ``mean +- std`` per metric, and the published accuracy."""
    published = published or {}
    header = ["strategy", *(_LABELS[m] for m in METRICS), "published acc %", "train s", "trainable params"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in summary.iterrows():
        cells = [row["strategy"]]
        if row.get("n_diverged", 0):  # mean and std are over the seeds that trained
            cells[0] += f" (diverged in {int(row['n_diverged'])} of {int(row['n_seeds'])} seeds)"
        for metric in METRICS:
            mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
            cells.append("n/a" if not np.isfinite(mean) else f"{mean:.2f}" if not np.isfinite(std)
                         else f"{mean:.2f} +- {std:.2f}")
        pub = published.get(row["strategy"])
        cells += [f"{pub:.2f}" if pub is not None else "-", f"{row['train_seconds_mean']:.1f}", f"{row['trainable_params']:,}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    """Where a benchmark ran: platform, CPU count, torch threads, Python, torch and numpy versions, device, and
    the system load average when the report was written (other jobs sharing the CPU slow every timing)."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _plot(summary: pd.DataFrame, published: dict[str, float], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(summary), 3.2))
    xs = np.arange(len(summary))
    ax.bar(xs, summary["accuracy_mean"], yerr=summary["accuracy_std"].fillna(0.0), color="#4c72b0", capsize=3, label="this run")
    pub = [published.get(s, np.nan) for s in summary["strategy"]]
    if np.isfinite(pub).any():
        ax.scatter(xs, pub, color="#dd8452", marker="D", zorder=3, label="published")
    ax.set_xticks(xs, summary["strategy"], rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _start_choices(records: list[dict]) -> str:
    """One line on REFINE's start chosen on validation (``refine_start`` in the records), or ``""``."""
    frame = pd.DataFrame(records)
    if "refine_start" not in frame:
        return ""
    lines = []
    for strategy, group in frame.dropna(subset=["refine_start"]).groupby("strategy", sort=False):
        counts = group["refine_start"].value_counts()
        kept = ", ".join(f"{name} start in {int(count)}" for name, count in counts.items())
        lines.append(f"{strategy}: {kept} of {len(group)} seeds")
    return "REFINE's start, chosen on a held-out 20% of the target subset: " + "; ".join(lines) + ".\n"


def write_report(
    records: list[dict],
    out_dir: str | Path,
    *,
    task: str,
    protocol: str,
    published: dict[str, float] | None = None,
    description: str = "",
    source_meta: dict | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``<task>-<protocol>.md`` / ``.csv`` (summary) / ``-runs.csv`` (every seed) / ``.png`` / ``.json``.

    Returns
    -------
    Kind -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{task}-{protocol}"
    summary = summarize(records)
    paths = {
        "runs": out / f"{stem}-runs.csv",
        "summary": out / f"{stem}.csv",
        "markdown": out / f"{stem}.md",
        "json": out / f"{stem}.json",
    }
    pd.DataFrame(records).to_csv(paths["runs"], index=False)
    summary.to_csv(paths["summary"], index=False)
    seeds = sorted({int(r["seed"]) for r in records})
    info = machine_info()
    text = [
        f"# {task} ({protocol} protocol)\n",
        f"{description}\n" if description else "",
        f"Seeds {seeds}; mean +- std over seeds; published = the paper's accuracy (paper protocol, 5 runs).\n",
        to_markdown(summary, published),
        f"\nMachine: {info['platform']}, {info['cpu_count']} CPUs, {info['torch_threads']} torch thread(s), torch "
        f"{info['torch']}, device {info['cuda'] or 'cpu'}; load average {info['load_average_1_5_15min']} (1/5/15 min) "
        "when written.\n",
    ]
    starts = _start_choices(records)
    if starts:
        text.append(starts)
    if source_meta:
        acc = source_meta.get("train_accuracy_on_source_labels")
        secs = source_meta.get("seconds")
        if acc is not None and secs is not None:
            text.append(f"Source: trained {secs:.0f} s, accuracy on its own (possibly corrupted) training labels {100 * acc:.1f}%.\n")
    paths["markdown"].write_text("\n".join(t for t in text if t))
    paths["json"].write_text(
        json.dumps({"task": task, "protocol": protocol, "seeds": seeds, "machine": info, "source": source_meta}, indent=2, default=str)
    )
    if plot:
        paths["plot"] = out / f"{stem}.png"
        _plot(summary, published or {}, f"{task} ({protocol})", paths["plot"])
    return paths
