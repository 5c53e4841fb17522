"""Test-session settings.

The tests train many small models: on a 2-core CI machine one intra-op thread per process is several
times faster than two competing for the cores (measured: the benchmark tests 38 s with one thread vs
minutes with two on a loaded machine). The library itself keeps torch's default.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)
