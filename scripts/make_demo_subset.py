"""Build the demo dataset shipped inside the package: ``spatial_refine/datasets/_data/merfish_demo.h5ad``.

Source: the manifest's ``merfish_hypothalamus`` (Moffitt et al. 2018 MERFISH, CC0), found through
``SPATIAL_REFINE_DATA_DIR`` and verified against its sha256. For each of the slices "1.-0.09" (Animal 1)
and "7.-0.09" (Animal 7), both at Bregma -0.09, it keeps the 2,500 cells nearest in L-infinity distance
to the slice's median position: a square window of contiguous tissue, so spatial neighbour graphs stay
meaningful. All 135 genes, X as float32 CSR (log-normalised values as in the source), obsm["spatial"],
obs "Cell_class" (all 15 categories kept, so the label space matches the full dataset) and "samples".

Deterministic: rerunning it gives the same cells and values. Afterwards update the ``merfish_demo`` entry
of ``data_manifest.yaml`` with the printed sha256 and size.

Usage::

    SPATIAL_REFINE_DATA_DIR=../shared/data python scripts/make_demo_subset.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from spatial_refine.datasets import fetch
from spatial_refine.datasets._verify import file_digest

SLICES = ("1.-0.09", "7.-0.09")
CELLS_PER_SLICE = 2500
DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "spatial_refine" / "datasets" / "_data" / "merfish_demo.h5ad"
)


def central_window(xy: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` points nearest (L-infinity) to the median point, in their original order."""
    dist = np.abs(xy - np.median(xy, axis=0)).max(axis=1)
    keep = np.argsort(dist, kind="stable")[:n]
    return np.sort(keep)


def build(source: ad.AnnData) -> ad.AnnData:
    """Subset the full MERFISH AnnData to the demo windows."""
    parts = []
    for name in SLICES:
        idx = np.flatnonzero((source.obs["samples"] == name).to_numpy())
        if idx.size < CELLS_PER_SLICE:
            raise ValueError(f"slice {name!r} has {idx.size} cells, fewer than {CELLS_PER_SLICE}")
        parts.append(idx[central_window(source.obsm["spatial"][idx], CELLS_PER_SLICE)])
    rows = np.concatenate(parts)
    sub = source[rows]
    obs = sub.obs[["Cell_class", "samples"]].copy()
    obs["samples"] = obs["samples"].cat.remove_unused_categories()
    demo = ad.AnnData(
        X=sp.csr_matrix(sub.X, dtype=np.float32),
        obs=obs,
        var=sub.var[[]].copy(),
        obsm={"spatial": np.asarray(sub.obsm["spatial"], dtype=np.float64)},
    )
    demo.uns["source"] = (
        "spatial_refine demo subset of Moffitt et al. 2018 MERFISH (CC0; Dryad doi:10.5061/dryad.8t8s248): "
        f"{CELLS_PER_SLICE} cells per slice in a square window around the median position of slices "
        f"{', '.join(SLICES)} of the manifest's merfish_hypothalamus; made by scripts/make_demo_subset.py"
    )
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    args = parser.parse_args()
    source = ad.read_h5ad(fetch("merfish_hypothalamus", download=False, verify="full"))
    demo = build(source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    demo.write_h5ad(args.out, compression="gzip", compression_opts=9)
    print(f"wrote {args.out}: {demo.n_obs} cells x {demo.n_vars} genes")
    print(f"  size: {args.out.stat().st_size}")
    print(f"  sha256: {file_digest(args.out)}")


if __name__ == "__main__":
    main()
