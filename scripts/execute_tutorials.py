"""Execute the tutorial notebooks in place (outputs and figures saved), printing each one's run time.

Usage::

    python scripts/execute_tutorials.py                      # every tutorials/*.ipynb
    python scripts/execute_tutorials.py tutorials/02_*.ipynb # some of them

Uses nbclient (installed with nbmake, the ``test`` extra); the same as
``jupyter nbconvert --to notebook --execute --inplace``. Run with ``OMP_NUM_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main(paths: list[str]) -> None:
    # the kernels import spatial_refine from this checkout, whatever the environment has installed
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "tutorials").glob("*.ipynb"))
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
