#!/usr/bin/env bash
# GPU check, one prepared run on a CUDA machine (CI has no GPU, so this is run by hand when one is lent).
#
# 1. The test suite with CUDA visible: every `device="auto"` (the default) then trains and predicts on the GPU,
#    with mixed precision on, so the CUDA paths of the core, the annotator and the scGPT loader are exercised.
#    Tests that need ../shared/data skip (the data does not travel); the tutorials are left out (no kernel).
#    Outcomes and failures are appended to $OUT/outcomes.txt and $OUT/failures.txt as they happen
#    (benchmarks/pytest_log_reports.py): at the 2026-12-04 run the time limit's SIGINT cut pytest's own summary.
# 2. The scale benchmark (benchmarks/spatial_scale.py) with train and predict on the GPU, then the same sizes
#    on this machine's CPU (all cores) in the same run, for the ratio.
# 3. The scGPT embedding benchmark (benchmarks/bench_scgpt_embed.py) on the GPU, when DATA holds
#    scgpt/vocab_default_census.json and spatial/seqfish_lohoff_embryo_3embryos.h5ad.
#
# Needs: a CUDA build of torch with torch-geometric, and the packages of benchmarks/gpu_check_requirements.txt
# (that file says how to carry them to a machine without a package index).
# Usage (repository root; OUT = folder for the logs and results, DATA = the shared data folder):
#     OUT=/tmp/gpu_check DATA=../shared/data bash benchmarks/gpu_check.sh
# The results files are also packed into $OUT/results.tgz after each step.
# Each step has its own time limit (seconds, overridable), so a hang in one cannot eat the others; the
# defaults fit a 10-minute device call. Seen on an H200 machine (2026-12-04): each benchmark run, a fresh
# process, spends 30-40 s importing and warming up before its first timer, so the runs are few.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
TESTS_S=${TESTS_S:-190}
GPU_BENCH_S=${GPU_BENCH_S:-170}
CPU_BENCH_S=${CPU_BENCH_S:-110}
SCGPT_S=${SCGPT_S:-90}
WORKERS=${WORKERS:-8}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-$(nproc)}

pack() {  # every results file written so far, in one archive (a lost step loses only itself)
  tar -czf "$OUT/results.tgz" -C benchmarks/results $(cd benchmarks/results && ls spatial_scale_gpu* scgpt_embed_cuda* 2>/dev/null)
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PYTHON - <<'EOF'
import importlib.metadata as md
for name in ["torch", "torch-geometric", "numpy", "scipy", "pandas", "scikit-learn", "anndata", "scanpy", "squidpy",
             "xarray", "numba", "pytest", "pytest-xdist"]:
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "MISSING")
import torch
print("cuda available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
assert torch.cuda.is_available(), "no CUDA device visible to torch"
import squidpy  # noqa: F401
import torch_geometric.nn  # noqa: F401
import spatial_refine as sr
import spatial_refine.annotator  # noqa: F401
print("spatial_refine", sr.__version__, "imports")
EOF
} >"$OUT/env.txt" 2>&1
status=$?
cat "$OUT/env.txt"
if [ $status -ne 0 ]; then
  echo "environment check failed (see above): stopping before the long steps"
  exit 3
fi

echo "== tests on CUDA (limit ${TESTS_S} s)"
# SIGINT at the limit: pytest tries to print its summary (outcomes.txt keeps what ran either way)
# fewer workers than cores: they share one GPU (14 of them made a CPU-light fixture exceed 120 s)
rm -f "$OUT/outcomes.txt" "$OUT/failures.txt"
OUT="$OUT" PYTHONPATH="benchmarks${PYTHONPATH:+:$PYTHONPATH}" timeout -s INT -k 15 "$TESTS_S" \
  $PYTHON -m pytest tests -o addopts="" -p no:cacheprovider -p pytest_log_reports -q -rfEs \
  -n "$WORKERS" --timeout 300 --tb=short >"$OUT/pytest.log" 2>&1
echo "pytest exit code $?"
tail -n 8 "$OUT/pytest.log"
echo "outcomes: $(cut -d' ' -f1 "$OUT/outcomes.txt" 2>/dev/null | sort | uniq -c | tr '\n' ' ')"
grep -v "^passed\|^skipped" "$OUT/outcomes.txt" 2>/dev/null | sort -u

echo "== scale benchmark, train and predict on the GPU (limit ${GPU_BENCH_S} s)"
OMP_NUM_THREADS=$THREADS timeout -k 15 "$GPU_BENCH_S" $PYTHON benchmarks/spatial_scale.py --device cuda \
  --stem spatial_scale_gpu --sizes 100000 1000000 \
  --compare 1000000:auto:auto 100000:sage:auto >"$OUT/bench_gpu.log" 2>&1
echo "exit code $?"
grep -v INFO "$OUT/bench_gpu.log" | tail -n 40
pack

echo "== the same on this machine's CPU, ${THREADS} threads (limit ${CPU_BENCH_S} s)"
OMP_NUM_THREADS=$THREADS timeout -k 15 "$CPU_BENCH_S" $PYTHON benchmarks/spatial_scale.py --device cpu \
  --stem spatial_scale_gpu_host_cpu --sizes 100000 1000000 --compare >"$OUT/bench_cpu.log" 2>&1
echo "exit code $?"
grep -v INFO "$OUT/bench_cpu.log" | tail -n 40
pack

echo "== scGPT embedding on the GPU (limit ${SCGPT_S} s)"
timeout -k 15 "$SCGPT_S" $PYTHON benchmarks/bench_scgpt_embed.py --device cuda --n-cells 4000 \
  --batch-sizes 64 256 --data-dir "$DATA" --out benchmarks/results/scgpt_embed_cuda >"$OUT/bench_scgpt.log" 2>&1
echo "exit code $?"
tail -n 25 "$OUT/bench_scgpt.log"
pack
ls -la "$OUT"
