"""Feature scale on tiny targets: f_rep units that never fire on the target training subset.

The core standardises f_rep with the training subset's mean and std (std floored at 1e-6). A unit that is
zero on every training image (common with 100 MNIST targets and a ReLU source) gets std 1e-6, so on a test
image where it fires its standardised value is ~1e5-1e6; its head weight never trained (constant input,
zero gradient) and stays at its random init, so it adds a large random logit. This script counts such
units and measures the probe and REFINE (warm and cold start) with those units zeroed instead (their std
set to infinity after fitting the statistics: what a linear head can learn from a constant input is
nothing, so zeroing loses no information). The core is untouched.

    SPATIAL_REFINE_DATA_DIR=../shared/data python benchmarks/diagnose_dead_features.py --task usps-mnist \\
        --protocol paper --set vision_source_optimizer=adam --set vision_source_lr=0.001 --set vision_source_epochs=5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "spatial_refine").is_dir():
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from spatial_refine.bench.protocols import get_protocol, override  # noqa: E402
from spatial_refine.bench.runner import _batches, pretrain_source, residual_encoder, train_config  # noqa: E402
from spatial_refine.bench.tasks import get_task  # noqa: E402
from spatial_refine.refine import build_strategy, extract_features, fit, predict_outputs, seeded  # noqa: E402

VARIANTS = (("linear_probe", {}), ("refine", {"start": "probe"}), ("refine", {"start": "cold"}))


def run(task_name: str, protocol_name: str, settings: list[str], seeds: list[int], cache: Path) -> pd.DataFrame:
    task = get_task(task_name)
    protocol = override(get_protocol(protocol_name), settings)
    source = pretrain_source(task, protocol, cache_dir=cache, device="cpu")
    rows, f_test = [], None
    for seed in seeds:
        train, test = task.target(protocol, seed)
        f_train = extract_features(source.source, train.x)
        f_test = extract_features(source.source, test.x) if f_test is None else f_test
        for name, options in VARIANTS:
            for zero_dead in (False, True):
                cfg = train_config(task, protocol, name, seed, "cpu")
                with seeded(seed):
                    model = build_strategy(
                        name, n_outputs=train.n_classes, source=source.source,
                        encoder=residual_encoder(task, protocol) if name == "refine" else None,
                        feature_dim=source.source.features.out_dim, **options,
                    )
                model.fit_feature_statistics(f_train)
                dead = model.scaler.std <= 1e-6
                if zero_dead:
                    model.scaler.std[dead] = float("inf")
                fit(model, _batches(train, f_train, cfg.batch_size, shuffle=True), task="classification", config=cfg)
                logits = predict_outputs(model, _batches(test, f_test, 256, shuffle=False), device="cpu")
                with torch.no_grad():
                    z = model.scaler(f_test)
                label = name if not options else f"refine:{options['start']}"
                rows.append({
                    "seed": seed, "strategy": label, "zero_dead_units": zero_dead,
                    "accuracy": float((logits.argmax(1).numpy() == test.y).mean()),
                    "dead_units": int(dead.sum()), "units": int(dead.numel()),
                    "max_abs_standardised_test_feature": float(z.abs().max()),
                    "max_abs_test_logit": float(logits.abs().max()),
                })
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--protocol", default="quick")
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/bench_sources"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    frame = run(args.task, args.protocol, args.settings, args.seeds, args.cache_dir)
    summary = frame.groupby(["strategy", "zero_dead_units"], sort=False).agg(
        accuracy_mean=("accuracy", "mean"), accuracy_std=("accuracy", "std"), dead_units=("dead_units", "mean"),
        max_abs_std_feature=("max_abs_standardised_test_feature", "median"), max_abs_logit=("max_abs_test_logit", "median"),
    )
    text = summary.round(4).to_markdown()
    print(text)
    if args.out is not None:
        frame.to_csv(args.out, index=False)
        args.out.with_suffix(".md").write_text(
            f"# Dead f_rep units: {args.task} ({frame.shape[0] // 6} seeds), `benchmarks/diagnose_dead_features.py`\n\n"
            f"Protocol settings: {args.protocol} {' '.join(args.settings)}. Medians over seeds for the maxima.\n\n" + text + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
