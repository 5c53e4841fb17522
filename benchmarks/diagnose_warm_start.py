"""Why REFINE's probe warm start can fall below NoTrans: train REFINE three ways on one benchmark task and
look inside the fused linear head.

Variants (same seed, same initialisation of h, whole target subset, the protocol's fixed epochs):

- ``cold``: random head (the paper's start);
- ``warm``: the core's warm start, head := [0 (h block), linear probe (f_rep block)];
- ``warm_hrand``: the probe for the f_rep block but the h block left at its random initialisation, so h
  gets gradient from the first step (a candidate core change; applied here by overriding
  ``start_from_probe`` on the instance, the core is untouched).

For each: test accuracy, the Frobenius norms of the head's h and f_rep blocks, and the accuracy of each
block alone (logits ``W_h h + b`` or ``W_f f + b``): how much the trained model relies on ``h``.

    SPATIAL_REFINE_DATA_DIR=../shared/data python benchmarks/diagnose_warm_start.py \\
        --task cifar10-flip80 --protocol quick --set n_target=2000 --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "spatial_refine").is_dir():
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from spatial_refine.bench.protocols import get_protocol, override  # noqa: E402
from spatial_refine.bench.runner import _batches, pretrain_source, residual_encoder, train_config  # noqa: E402
from spatial_refine.bench.tasks import get_task  # noqa: E402
from spatial_refine.refine import build_strategy, extract_features, fit, seeded  # noqa: E402

VARIANTS = ("cold", "warm", "warm_hrand")


@torch.no_grad()
def _start_keep_h(self, probe) -> None:
    """Head := [random h block (kept), probe weights], bias := probe bias."""
    h_dim = self.head.in_features - probe.head.in_features
    self.head.weight[:, h_dim:] = probe.head.weight
    self.head.bias.copy_(probe.head.bias)


@torch.no_grad()
def _inspect(model, x: torch.Tensor, f: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    model.eval()
    h = torch.cat([model.encode(model.encoder, x[i : i + 256], None) for i in range(0, len(x), 256)])
    fs = model.scaler(f)
    w, b = model.head.weight, model.head.bias
    h_dim = h.shape[1]
    logits_h, logits_f = h @ w[:, :h_dim].T + b, fs @ w[:, h_dim:].T + b
    full = logits_h + logits_f - b
    return {
        "accuracy": float((full.argmax(1).numpy() == y).mean()),
        "acc_h_block_only": float((logits_h.argmax(1).numpy() == y).mean()),
        "acc_f_block_only": float((logits_f.argmax(1).numpy() == y).mean()),
        "norm_W_h": float(w[:, :h_dim].norm()),
        "norm_W_f": float(w[:, h_dim:].norm()),
        "std_logits_h": float(logits_h.std()),
        "std_logits_f": float(logits_f.std()),
    }


def run(task_name: str, protocol_name: str, settings: list[str], seeds: list[int], cache: Path) -> pd.DataFrame:
    task = get_task(task_name)
    protocol = override(get_protocol(protocol_name), settings)
    source = pretrain_source(task, protocol, cache_dir=cache, device="cpu")
    rows = []
    test_features = None
    for seed in seeds:
        train, test = task.target(protocol, seed)
        f_train = extract_features(source.source, train.x)
        test_features = extract_features(source.source, test.x) if test_features is None else test_features
        cfg = train_config(task, protocol, "refine", seed, "cpu")
        for variant in VARIANTS:
            with seeded(seed):
                model = build_strategy(
                    "refine", n_outputs=train.n_classes, encoder=residual_encoder(task, protocol), source=source.source,
                    feature_dim=source.source.features.out_dim, start="cold" if variant == "cold" else "probe",
                )
            if variant == "warm_hrand":
                model.start_from_probe = types.MethodType(_start_keep_h, model)
            model.fit_feature_statistics(f_train)
            history = fit(model, _batches(train, f_train, cfg.batch_size, shuffle=True), task="classification", config=cfg)
            row = {"task": task_name, "protocol": protocol.name, "seed": seed, "variant": variant,
                   "final_train_loss": history.train_loss[-1], **_inspect(model, test.x, test_features, test.y)}
            rows.append(row)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--protocol", default="quick")
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/bench_sources"))
    parser.add_argument("--out", type=Path, default=None, help="CSV of every run (and a .md summary next to it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    frame = run(args.task, args.protocol, args.settings, args.seeds, args.cache_dir)
    cols = ["accuracy", "acc_h_block_only", "acc_f_block_only", "norm_W_h", "norm_W_f", "std_logits_h", "std_logits_f",
            "final_train_loss"]
    summary = frame.groupby("variant", sort=False)[cols].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    text = summary.round(4).to_markdown()
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
        args.out.with_suffix(".md").write_text(
            f"# Warm-start diagnosis: {args.task} ({frame['protocol'].iloc[0]}), seeds {args.seeds}\n\n"
            "Produced by `benchmarks/diagnose_warm_start.py`; accuracies are fractions of the test set.\n\n" + text + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
