"""Why can REFINE fall below NoTrans? Scale diagnostics of f_rep against h(x) for cached quick sources.

For each task: the pretrained (cached) source's features on target training images (per-feature standard
deviation, dead-unit fraction, mean row norm) against the residual encoder's output at initialisation and
the norm of each block's share of the REFINE head's logits.

    SPATIAL_REFINE_DATA_DIR=../shared/data python benchmarks/diagnose_scale.py --cache-dir DIR task [task ...]
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "spatial_refine").is_dir():
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from spatial_refine.bench.protocols import QUICK  # noqa: E402
from spatial_refine.bench.runner import pretrain_source, residual_encoder  # noqa: E402
from spatial_refine.bench.tasks import get_task  # noqa: E402
from spatial_refine.refine import extract_features, seeded  # noqa: E402


def diagnose(name: str, cache_dir: Path) -> str:
    task = get_task(name)
    source = pretrain_source(task, QUICK, cache_dir=cache_dir, device="cpu")
    train, _ = task.target(QUICK, QUICK.seeds[0])
    f = extract_features(source.source, train.x)
    with seeded(0), torch.no_grad():
        h = residual_encoder(task, QUICK).eval()(train.x)
    dead = float((f.abs().max(0).values == 0).float().mean())
    return (
        f"{name}: f_rep {tuple(f.shape)} dead units {100 * dead:.1f}%, per-feature std median "
        f"{float(f.std(0).median()):.4f}, row norm {float(f.norm(dim=1).mean()):.3f} | "
        f"h(x) at init {tuple(h.shape)} row norm {float(h.norm(dim=1).mean()):.3f}, per-feature std median "
        f"{float(h.std(0).median()):.4f} | source accuracy on its own training labels "
        f"{100 * source.meta.get('train_accuracy_on_source_labels', float('nan')):.1f}%"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.tasks:
        print(diagnose(name, args.cache_dir))
