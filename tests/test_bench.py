"""Benchmark runners: every task end to end on tiny synthetic data, the CLI, caching, readers, models."""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_refine.bench import data as bd
from spatial_refine.bench.cli import main as bench_main
from spatial_refine.bench.metrics import classification_metrics
from spatial_refine.bench.protocols import QUICK, get_protocol
from spatial_refine.bench.runner import parse_strategy, pretrain_source, run_task
from spatial_refine.bench.tasks import TASKS, DataMissingError, flip_labels, get_task, tasks_for
from spatial_refine.encoders import (
    BigCNN,
    HashingTokenizer,
    ResNet,
    SmallCNN,
    TextSourceFeatures,
    TextTransformer,
)

TINY = dataclasses.replace(
    QUICK,
    name="tiny",
    seeds=(0,),
    big_channels=(4, 4, 4, 4, 4, 4),
    feature_dim=12,
    small_channels=(4, 4, 4),
    small_hidden=8,
    resnet_width=2,
    vision_source_epochs=1,
    vision_target_epochs=1,
    n_source=40,
    n_target=20,
    n_usps=30,
    n_mnist=20,
    n_stl=20,
    n_test=20,
    text_d_model=8,
    text_heads=2,
    text_ff=16,
    text_layers=1,
    text_max_len=16,
    text_vocab=64,
    text_feature_dim=12,
    text_source_epochs=1,
    text_target_epochs=1,
    text_target_per_class=4,
    text_test_per_class=4,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny models run fastest on one thread (and do not oversubscribe a shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _jpeg(rng: np.random.Generator, size: int = 32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _reviews(label: str, n: int, rng: np.random.Generator) -> str:
    words = ["great", "love", "works"] if label == "positive" else ["broken", "awful", "refund"]
    blocks = []
    for i in range(n):
        text = " ".join(rng.choice([*words, "the", "it", "was"], size=8))
        blocks.append(f"<review>\n<rating>\n5.0\n</rating>\n<title>\nt{i}\n</title>\n<review_text>\n{text}\n</review_text>\n</review>")
    return "\n".join(blocks)


@pytest.fixture(scope="session")
def synthetic_paths(tmp_path_factory) -> dict[str, Path]:
    """A tiny stand-in for every manifest entry the tasks read."""
    root = tmp_path_factory.mktemp("bench_data")
    rng = np.random.default_rng(0)
    paths: dict[str, Path] = {}
    # CIFAR-10 JPEG image folders in a tar.gz: 10 per class in train, 3 in test
    paths["cifar10_jpeg"] = root / "cifar10.tar.gz"
    with tarfile.open(paths["cifar10_jpeg"], "w:gz") as archive:
        for split, n in (("train", 10), ("test", 3)):
            for c in CIFAR_CLASSES:
                for i in range(n):
                    _add(archive, f"cifar10/{split}/{c}/{i:04d}.jpg", _jpeg(rng))
    # digits
    import h5py

    paths["usps_h5"] = root / "usps.h5"
    with h5py.File(paths["usps_h5"], "w") as f:
        for split, n in (("train", 50), ("test", 10)):
            f.create_dataset(f"{split}/data", data=rng.random((n, 256), dtype=np.float32))
            f.create_dataset(f"{split}/target", data=np.arange(n) % 10)
    paths["mnist_5k"] = root / "mnist_5k.csv.gz"
    table = np.concatenate([rng.integers(0, 256, (40, 784)), (np.arange(40) % 10)[:, None]], axis=1)
    with gzip.open(paths["mnist_5k"], "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    paths["mnist_test_images"] = root / "t10k-images-idx3-ubyte.gz"
    paths["mnist_test_labels"] = root / "t10k-labels-idx1-ubyte.gz"
    _write_idx(paths["mnist_test_images"], rng.integers(0, 256, (30, 28, 28)))
    _write_idx(paths["mnist_test_labels"], np.arange(30) % 10)
    # CIFAR-100 official python layout (pickled dicts of arrays, as published)
    paths["cifar100_python"] = root / "cifar-100-python.tar.gz"
    with tarfile.open(paths["cifar100_python"], "w:gz") as archive:
        for split, n in (("train", 200), ("test", 100)):
            batch = {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"fine_labels": (np.arange(n) % 100).tolist(),
                b"coarse_labels": (np.arange(n) % 20).tolist(),
            }
            _add(archive, f"cifar-100-python/{split}", pickle.dumps(batch, protocol=2))
    # STL-10 binaries
    paths["stl10_binary"] = root / "stl10_binary.tar.gz"
    with tarfile.open(paths["stl10_binary"], "w:gz") as archive:
        for split, n in (("train", 30), ("test", 20)):
            _add(archive, f"stl10_binary/{split}_X.bin", rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tobytes())
            _add(archive, f"stl10_binary/{split}_y.bin", (np.arange(n) % 10 + 1).astype(np.uint8).tobytes())
    # DomainNet zips and split lists (45 classes: the task keeps the first 40)
    for domain in ("clipart", "sketch"):
        paths[f"domainnet_{domain}"] = root / f"{domain}.zip"
        train_lines, test_lines = [], []
        with zipfile.ZipFile(paths[f"domainnet_{domain}"], "w") as archive:
            for c in range(45):
                for i in range(3):
                    name = f"{domain}/class{c:02d}/{domain}_{i}.jpg"
                    archive.writestr(name, _jpeg(rng, 40))
                    (test_lines if i == 2 else train_lines).append(f"{name} {c}")
        for split, lines in (("train", train_lines), ("test", test_lines)):
            paths[f"domainnet_{domain}_{split}_list"] = root / f"{domain}_{split}.txt"
            paths[f"domainnet_{domain}_{split}_list"].write_text("\n".join(lines) + "\n")
    # Blitzer review folders
    for domain in ("books", "kitchen", "dvd", "electronics"):
        folder = root / "blitzer" / domain
        folder.mkdir(parents=True)
        for label in ("positive", "negative"):
            (folder / f"{label}.review").write_text(_reviews(label, 12, rng))
        paths[f"blitzer_{domain}"] = folder
    return paths


# ------------------------------------------------------------------------------------------------
# every task end to end


@pytest.mark.parametrize("name", list(TASKS))
def test_task_end_to_end(name, synthetic_paths, tmp_path):
    task = get_task(name)
    strategies = ("notrans", "linear_probe", "adapter", "distill", "lora", "dann_gate", "refine")
    records, source = run_task(task, TINY, strategies=strategies, seeds=(0,), cache_dir=tmp_path, paths=synthetic_paths, device="cpu")
    got = {r["strategy"] for r in records}
    expected = set(strategies) - (set() if task.same_label_space else {"distill"})
    if task.arch == "resnet":  # pooled ResNet features hold no Linear layer for LoRA to adapt
        expected -= {"lora", "dann_gate"}
    assert got == expected
    for r in records:
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["n_test"] > 0
    assert source.path is not None and source.path.suffix == ".safetensors" and source.path.is_file()


def test_a_diverged_run_is_recorded_and_reported_not_a_crash(synthetic_paths, tmp_path, monkeypatch):
    from spatial_refine.bench import runner
    from spatial_refine.bench.report import summarize, to_markdown

    real_fit = runner.fit

    def fit_that_diverges_for_the_adapter(model, *args, **kwargs):
        if type(model).__name__ == "Adapter":
            raise FloatingPointError("The training loss became nan at epoch 3: lower the learning rate.")
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(runner, "fit", fit_that_diverges_for_the_adapter)
    records, _ = run_task(get_task("usps-mnist"), TINY, strategies=("linear_probe", "adapter"), seeds=(0, 1),
                          cache_dir=tmp_path, paths=synthetic_paths, device="cpu")
    adapter = [r for r in records if r["strategy"] == "adapter"]
    assert len(adapter) == 2 and all(np.isnan(r["accuracy"]) and "nan at epoch 3" in r["diverged"] for r in adapter)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records if r["strategy"] == "linear_probe")
    table = to_markdown(summarize(records))
    assert "adapter (diverged in 2 of 2 seeds) | n/a" in table
    assert "diverged" not in table.split("linear_probe")[1].split("\n")[0]


def test_source_cache_is_reused_and_keyed_by_config(synthetic_paths, tmp_path):
    task = get_task("usps-mnist")
    first = pretrain_source(task, TINY, cache_dir=tmp_path, paths=synthetic_paths, device="cpu")
    second = pretrain_source(task, TINY, cache_dir=tmp_path, paths=synthetic_paths, device="cpu")
    assert first.path == second.path
    for a, b in zip(first.source.state_dict().values(), second.source.state_dict().values()):
        assert torch.equal(a, b)
    other = pretrain_source(
        task, dataclasses.replace(TINY, vision_source_epochs=2), cache_dir=tmp_path, paths=synthetic_paths, device="cpu"
    )
    assert other.path != first.path
    target_side = pretrain_source(
        task, dataclasses.replace(TINY, name="tiny+n_test=5", n_test=5, vision_target_epochs=3),
        cache_dir=tmp_path, paths=synthetic_paths, device="cpu",
    )
    assert target_side.path == first.path  # target-only settings reuse the source
    assert all(p.suffix in (".safetensors", ".json") for p in tmp_path.iterdir())


def test_runs_are_reproducible(synthetic_paths, tmp_path):
    task = get_task("cifar10-flip80")
    runs = [
        run_task(task, TINY, strategies=("refine",), seeds=(3,), cache_dir=tmp_path, paths=synthetic_paths, device="cpu")[0]
        for _ in range(2)
    ]
    assert runs[0][0]["accuracy"] == runs[1][0]["accuracy"]
    assert runs[0][0]["auc_ovr"] == runs[1][0]["auc_ovr"]


def test_cli_writes_tables_and_plot(synthetic_paths, tmp_path, monkeypatch):
    import spatial_refine.bench.protocols as protocols

    monkeypatch.setitem(protocols.PROTOCOLS, "quick", TINY)
    out = tmp_path / "results"
    args = ["text", "--task", "books-kitchen", "--seeds", "1", "2", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--strategies", "notrans", "linear_probe", "refine", "refine:plain"]
    for entry in ("blitzer_books", "blitzer_kitchen"):
        args += ["--path", f"{entry}={synthetic_paths[entry]}"]
    assert bench_main(args) == 0
    names = {p.name for p in out.iterdir()}
    assert {"books-kitchen-tiny.md", "books-kitchen-tiny.csv", "books-kitchen-tiny-runs.csv", "books-kitchen-tiny.png",
            "books-kitchen-tiny.json"} <= names
    markdown = (out / "books-kitchen-tiny.md").read_text()
    assert "refine:plain" in markdown and "72.72" in markdown  # published REFINE number next to ours
    import pandas as pd

    runs = pd.read_csv(out / "books-kitchen-tiny-runs.csv")
    assert len(runs) == 8 and set(runs["seed"]) == {1, 2}


def test_cli_parser_registers_bench_subcommands():
    import argparse

    from spatial_refine.bench.cli import add_bench_parser

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "vision", "--task", "usps-mnist", "--protocol", "paper"])
    assert args.modality == "vision" and args.task == ["usps-mnist"] and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "vision", "--task", "books-kitchen"])


def test_missing_data_names_the_manifest_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SPATIAL_REFINE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataMissingError, match="stl10_binary"):
        get_task("cifar10-stl").check_data(paths={"cifar10_jpeg": tmp_path})
    with pytest.raises(DataMissingError, match="does not exist"):
        get_task("usps-mnist").check_data(paths={"usps_h5": tmp_path / "nope.h5"})


def test_cli_reports_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SPATIAL_REFINE_CACHE_DIR", str(tmp_path / "cache"))
    assert bench_main(["vision", "--task", "cifar10-100", "--out", str(tmp_path)]) == 1
    assert "cifar100_python" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--strategies", "refine", "foo"], "unknown strategy 'foo'"),
     (["--set", "n_target=abc"], "n_target takes a value of type int"),
     (["--device", "tpu"], "Unknown device 'tpu'"),
     (["--seeds", "-1"], "--seeds must be non-negative"),
     (["--threads", "-2"], "--threads must be positive")],
)
def test_cli_refuses_bad_options_before_reading_data_or_training(options, message, tmp_path, monkeypatch, capsys):
    # no data anywhere: had the options passed, the run would stop at the missing data (exit 1), not at 2
    monkeypatch.setenv("SPATIAL_REFINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SPATIAL_REFINE_CACHE_DIR", str(tmp_path / "cache"))
    assert bench_main(["text", "--task", "books-kitchen", "--out", str(tmp_path / "out"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_a_single_seed_has_no_spread_to_report():
    from spatial_refine.bench.report import summarize, to_markdown

    records = [{"task": "t", "strategy": "refine", "seed": 0, "accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": 0.4,
                "auc_ovr": 0.6, "min_class_accuracy": 0.3, "train_seconds": 1.0, "trainable_params": 10}]
    summary = summarize(records)
    assert np.isnan(summary.loc[0, "accuracy_std"])
    assert "| refine | 50.00 |" in to_markdown(summary) and "+-" not in to_markdown(summary)


# ------------------------------------------------------------------------------------------------
# pieces


def test_task_registry_covers_the_issue():
    assert set(tasks_for("vision")) >= {
        "usps-mnist", "cifar10-stl", "cifar100-10", "cifar10-100", "clipart-sketch",
        "cifar10-flip40", "cifar10-flip80", "cifar10-semantic", "cifar10-imbalance",
    }
    assert set(tasks_for("text")) == {"books-kitchen", "dvd-electronics"}
    with pytest.raises(ValueError, match="Unknown task"):
        get_task("mnist-usps")
    with pytest.raises(ValueError, match="Unknown protocol"):
        get_protocol("fast")


def test_parse_strategy_variants():
    assert parse_strategy("refine") == ("refine", {})
    assert parse_strategy("refine:plain") == ("refine", {"standardize_features": False, "start": "cold"})
    assert parse_strategy("refine:cold") == ("refine", {"start": "cold"})
    assert parse_strategy("refine:probe,nostd") == ("refine", {"start": "probe", "standardize_features": False})
    assert parse_strategy("refine:residual") == ("refine", {"start": "residual"})
    with pytest.raises(ValueError):
        parse_strategy("notrans:nostd")
    with pytest.raises(ValueError):
        parse_strategy("refine:wide")


def test_flip_labels_always_changes_flipped_labels():
    y = np.arange(10_000) % 10
    flipped = flip_labels(y, 0.8, 10, seed=0)
    rate = np.mean(flipped != y)
    assert 0.78 < rate < 0.82
    assert np.array_equal(flip_labels(y, 0.8, 10, seed=0), flipped)
    assert np.array_equal(flip_labels(y, 0.0, 10, seed=0), y)


def test_metrics_on_known_predictions():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    m = classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["min_class_accuracy"] == pytest.approx(0.5)
    assert 0.5 < m["auc_ovr"] <= 1.0
    assert np.isnan(classification_metrics(np.array([0, 0]), np.eye(3)[[0, 1]])["auc_ovr"])


def test_readers(synthetic_paths):
    folder = bd.ImageFolder.open(synthetic_paths["cifar10_jpeg"], "test")
    assert folder.classes == CIFAR_CLASSES and len(folder) == 30
    images = folder.load([0, 5])
    assert images.shape == (2, 3, 32, 32) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert images.is_contiguous()  # plain NCHW, not a channels-last view (see ImageFolder.load)
    x, y = bd.load_cifar_python(synthetic_paths["cifar100_python"], "test")
    assert x.shape == (100, 3, 32, 32) and y.max() == 99
    x, y = bd.load_stl10_binary(synthetic_paths["stl10_binary"], "test")
    assert x.shape == (20, 3, 32, 32) and y.min() == 0 and y.max() == 9
    texts, labels = bd.load_blitzer(synthetic_paths["blitzer_books"])
    assert len(texts) == 24 and labels.sum() == 12 and "<" not in texts[0]
    assert bd.read_idx(synthetic_paths["mnist_test_labels"]).shape == (30,)


def test_cifar_reader_refuses_foreign_pickled_objects(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "cifar-100-python/test", pickle.dumps({"data": Path("x")}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        bd.load_cifar_python(path, "test")


def test_paper_architectures_have_the_published_shapes():
    big = BigCNN()
    assert big.out_dim == 2560 and big.fc.in_features == 768
    assert big(torch.zeros(2, 3, 32, 32)).shape == (2, 2560)
    small = SmallCNN()
    assert small.out_dim == 512 and small.fc.in_features == 1024
    transformer = TextTransformer()
    assert ResNet().out_dim == 512 and ResNet((1, 1, 1, 1)).out_dim == 512
    assert ResNet((1, 1, 1, 1), 4)(torch.zeros(2, 3, 32, 32)).shape == (2, 32)
    assert transformer.out_dim == 512 and len(transformer.encoder.layers) == 6
    source = TextSourceFeatures(transformer)
    ids = HashingTokenizer()(["a great product !", "awful"])
    assert ids.shape == (2, 256) and source(ids).shape == (2, 2560)


def test_tokenizer_is_stable_and_pads():
    tok = HashingTokenizer(vocab_size=100, max_len=5)
    ids = tok(["Great, GREAT product!", ""])
    assert ids[0, 0] == 1 and ids[0, 1] == ids[0, 2] and ids[1, 1:].tolist() == [0, 0, 0, 0]
    assert tok.token_id("great") == HashingTokenizer(vocab_size=100).token_id("great")


@pytest.mark.data
def test_real_data_smoke(tmp_path):
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (data / "vision" / "usps.h5").is_file() or not (data / "text" / "amazon_reviews_blitzer").is_dir():
        pytest.skip("../shared/data is absent")
    protocol = dataclasses.replace(TINY, n_usps=100, n_test=100)
    for name in ("usps-mnist", "dvd-electronics"):
        records, _ = run_task(
            get_task(name), protocol, strategies=("notrans", "refine"), seeds=(0,), cache_dir=tmp_path, data_dir=data, device="cpu"
        )
        assert len(records) == 2 and all(r["n_test"] > 0 for r in records)


def test_protocol_override_is_named_and_typed():
    from spatial_refine.bench.protocols import override

    p = override(QUICK, ["n_target=2000", "small_channels=32,64,64", "n_test=none", "vision_lr=0.01"])
    assert p.n_target == 2000 and p.small_channels == (32, 64, 64) and p.n_test is None and p.vision_lr == 0.01
    assert p.name.startswith("quick+") and "n_target=2000" in p.name
    assert override(QUICK, []) is QUICK
    with pytest.raises(ValueError, match="Cannot set"):
        override(QUICK, ["widths=3"])


@pytest.mark.parametrize(
    ("modality", "task", "entries"),
    [("vision", "usps-mnist", ("usps_h5", "mnist_5k", "mnist_test_images", "mnist_test_labels")),
     ("text", "books-kitchen", ("blitzer_books", "blitzer_kitchen"))],
)
def test_main_cli_runs_bench(modality, task, entries, synthetic_paths, tmp_path, monkeypatch):
    """``spatial-refine bench vision|text ...`` through the package's console entry point."""
    import spatial_refine.bench.protocols as protocols
    from spatial_refine.cli import main as cli_main

    monkeypatch.setitem(protocols.PROTOCOLS, "quick", TINY)
    out = tmp_path / "results"
    args = ["bench", modality, "--task", task, "--seeds", "0", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--strategies", "notrans", "linear_probe", "refine", "--no-plot"]
    for entry in entries:
        args += ["--path", f"{entry}={synthetic_paths[entry]}"]
    assert cli_main(args) == 0
    import pandas as pd

    table = pd.read_csv(out / f"{task}-tiny.csv")
    assert set(table["strategy"]) == {"notrans", "linear_probe", "refine"}
    assert list(out.glob("*.png")) == []


def test_main_cli_rejects_a_task_of_the_other_modality():
    from spatial_refine.cli import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["bench", "text", "--task", "usps-mnist"])


def test_stratified_holdout_keeps_every_class_on_both_sides():
    from spatial_refine.bench.runner import stratified_holdout

    y = np.repeat(np.arange(10), 10)
    fit_rows, val_rows = stratified_holdout(y, 0.2, seed=0)
    assert len(val_rows) == 20 and len(fit_rows) == 80
    assert set(np.intersect1d(fit_rows, val_rows)) == set()
    assert all((y[val_rows] == c).sum() == 2 for c in range(10))
    lonely = stratified_holdout(np.array([0, 1, 1]), 0.2, seed=0)
    assert list(lonely[1]) == [1] or list(lonely[1]) == [2]
    assert 0 in lonely[0]


def test_refine_start_is_chosen_and_recorded(synthetic_paths, tmp_path):
    """Default REFINE: start chosen on a held-out split, then trained on the whole target subset."""
    from spatial_refine.refine.strategies import Refine

    task = get_task("cifar10-flip80")
    records, _ = run_task(task, TINY, strategies=("refine", "refine:probe", "refine:cold"), seeds=(0,),
                          cache_dir=tmp_path, paths=synthetic_paths, device="cpu")
    by = {r["strategy"]: r for r in records}
    import inspect

    assert inspect.signature(Refine).parameters["start"].default == "auto"
    assert by["refine"]["refine_start"] in ("probe", "residual")
    assert {"start_val_loss_probe", "start_val_loss_residual"} <= set(by["refine"])
    assert by["refine"]["n_train"] == by["refine:probe"]["n_train"] == TINY.n_target
    assert "refine_start" not in by["refine:probe"] and "refine_start" not in by["refine:cold"]


def test_merge_runs_rebuilds_one_report_from_seed_parts(tmp_path):
    """benchmarks/merge_runs.py: per-seed invocations merged as if all seeds had run at once."""
    import importlib.util

    import pandas as pd

    from spatial_refine.bench.report import write_report

    spec = importlib.util.spec_from_file_location("merge_runs", Path(__file__).parents[1] / "benchmarks" / "merge_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parts = []
    for seed in (1, 2):
        records = [
            {"task": "books-kitchen", "protocol": "tiny", "strategy": s, "seed": seed, "accuracy": acc, "macro_f1": acc,
             "weighted_f1": acc, "auc_ovr": acc, "min_class_accuracy": acc, "train_seconds": 1.0, "n_train": 8,
             "n_test": 8, "trainable_params": 10}
            for s, acc in (("notrans", 0.5 + 0.1 * seed), ("refine", 0.6))
        ]
        written = write_report(records, tmp_path / f"s{seed}", task="books-kitchen", protocol="tiny", plot=False)
        parts.append(written["runs"])
    module.merge(parts, tmp_path / "all", "books-kitchen", "tiny", plot=False)
    table = pd.read_csv(tmp_path / "all" / "books-kitchen-tiny.csv").set_index("strategy")
    assert table.loc["notrans", "n_seeds"] == 2
    assert table.loc["notrans", "accuracy_mean"] == pytest.approx(65.0)
    assert "72.72" in (tmp_path / "all" / "books-kitchen-tiny.md").read_text()


def _load_benchmark(name: str):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_spatial_claim_check_takes_the_best_weighting_of_each_baseline():
    """benchmarks/spatial_annotation.py: REFINE against the better of GNN and probe, each unweighted or '_bal'."""
    import pandas as pd

    bench = _load_benchmark("spatial_annotation")
    assert bench.class_weight_of("refine") == "effective" and bench.class_weight_of("gnn_eff") == "effective"
    assert bench.class_weight_of("refine_bal") == "balanced" and bench.class_weight_of("gnn_bal") == "balanced"
    assert bench.class_weight_of("gnn") is None and bench.class_weight_of("refine_unweighted") is None
    # macro-F1 per seed (3 seeds): refine vs gnn (0.50), gnn_bal (0.60), probes (0.40 / 0.45), logreg_bal (0.70)
    scores = {
        "refine[encoder]": (0.61, 0.62, 0.63), "gnn": (0.50, 0.50, 0.50), "gnn_bal": (0.60, 0.60, 0.60),
        "linear_probe[encoder]": (0.40, 0.40, 0.40), "linear_probe_bal[encoder]": (0.45, 0.45, 0.45),
        "logreg": (0.55, 0.55, 0.55), "logreg_bal": (0.70, 0.71, 0.72), "refine_unweighted[encoder]": (0.9, 0.9, 0.9),
        "linear_probe[pca]": (0.99, 0.99, 0.99),  # another representation: not a baseline of refine[encoder]
        "scanvi": (0.95, 0.95, None),  # ran on 2 of REFINE's 3 seeds: left out of the paired comparison
    }
    runs = pd.DataFrame([{"task": "t", "n": 100, "seed": seed, "method": method, "macro_f1": f1[seed]}
                         for method, f1 in scores.items() for seed in range(3) if f1[seed] is not None])
    claim = bench.claim_check(runs).iloc[0]
    assert claim["better_of_gnn_probe"] == "gnn_bal" and claim["its_f1"] == pytest.approx(0.60)
    # paired differences 0.01, 0.02, 0.03: mean 0.02, SE = 0.01 / sqrt(3)
    assert claim["diff"] == pytest.approx(0.02) and claim["diff_se"] == pytest.approx(0.01 / np.sqrt(3))
    assert not claim["below_by_more_than_noise"]  # (None only without a standard error)
    # best of all baselines: logreg_bal (REFINE's own ablations and other representations do not count)
    assert claim["best_baseline"] == "logreg_bal" and claim["diff_to_best_baseline"] == pytest.approx(-0.09)
    assert claim["below_best_by_more_than_noise"]  # every per-seed difference is -0.09


def test_spatial_benchmark_refuses_unknown_methods_before_loading_data(capsys):
    bench = _load_benchmark("spatial_annotation")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--methods", "refine_eff"])  # the variant that became the default: it is "refine" now
    assert stop.value.code == 2 and "unknown --methods ['refine_eff']" in capsys.readouterr().err
    assert {"refine", "gnn", "gnn_bal", "gnn_eff", "logreg_probe_eff"} <= set(bench.DEFAULT_METHODS)
    for ablation in ("refine_unweighted", "refine_bal"):
        assert ablation not in bench.DEFAULT_METHODS and ablation in bench.OPTIONAL_METHODS


def test_seed_replication_scores_the_baseline_chosen_on_other_seeds(monkeypatch):
    """benchmarks/spatial_seed_replication.py: the best baseline is chosen on the first seeds, scored on the new."""
    import pandas as pd

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    module = _load_benchmark("spatial_seed_replication")

    def runs(scores: dict, seeds: tuple) -> pd.DataFrame:
        return pd.DataFrame([{"task": "t", "n": 100, "seed": seed, "method": m, "macro_f1": f}
                             for m, values in scores.items() for seed, f in zip(seeds, values, strict=True)])

    # seeds 0-2: logreg (0.70) beats logreg_bal (0.60); seeds 3-5: logreg_bal would win, but logreg was chosen
    first = runs({"refine[encoder]": (0.65, 0.65, 0.65), "gnn": (0.5,) * 3, "linear_probe[encoder]": (0.4,) * 3,
                  "logreg": (0.70, 0.71, 0.72), "logreg_bal": (0.60,) * 3}, (0, 1, 2))
    second = runs({"refine[encoder]": (0.70, 0.72, 0.74), "gnn": (0.5,) * 3, "linear_probe[encoder]": (0.4,) * 3,
                   "logreg": (0.69, 0.70, 0.71), "logreg_bal": (0.90,) * 3}, (3, 4, 5))
    held = module.held_out_comparison(first, second).iloc[0]
    assert held["baseline"] == "logreg" and held["seeds"] == 3
    # by hand: differences 0.01, 0.02, 0.03 -> mean 0.02, SE = std(ddof=1) / sqrt(3) = 0.01 / sqrt(3)
    assert held["diff"] == pytest.approx(0.02) and held["se"] == pytest.approx(0.01 / 3**0.5)
    assert not held["below"]


def test_selection_shrinkage_keeps_a_mixture_only_when_it_beats_the_best_fit_by_more_than_noise(monkeypatch):
    """benchmarks/diagnose_selection_shrinkage.py: per-cell log-losses and their paired standard error by hand."""
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    module = _load_benchmark("diagnose_selection_shrinkage")
    codes = np.array([0, 0, 1, 1])
    # fit a: p(true) = 0.9, 0.9, 0.6, 0.6; fit b: 0.6, 0.6, 0.9, 0.9 -> equal mean losses, a (first) is "best"
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    b = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.1, 0.9]])
    fits = {"a": SimpleNamespace(val_proba=a), "b": SimpleNamespace(val_proba=b)}
    half = {"a": 0.5, "b": 0.5}
    # the half-half mixture has p(true) = 0.75 everywhere; its per-cell gain over a is
    # log(0.75 / 0.9) (< 0) on two cells and log(0.75 / 0.6) (> 0) on two: mean 0.0204 > 0, paired
    # SE = std(gains, ddof=1) / sqrt(4) = 0.117: better than a, but by less than one SE
    gains = np.array([np.log(0.75 / 0.9)] * 2 + [np.log(0.75 / 0.6)] * 2)
    assert gains.mean() > 0 and gains.mean() < gains.std(ddof=1) / 2  # better, but within one SE
    assert module.shrunk_weights(fits, codes, half) == {"a": 1.0, "b": 0.0}
    assert module.shrunk_weights(fits, codes, half, k_se=-1.0) == half  # any gain above -1 SE keeps it


def test_weighted_selection_weighs_each_cells_loss_by_its_class(monkeypatch):
    """benchmarks/diagnose_weighted_selection.py: the weighted log-loss by hand picks the other fit."""
    from spatial_refine.refine import greedy_ensemble_weights

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    module = _load_benchmark("diagnose_weighted_selection")
    codes = np.array([0, 0, 0, 1])
    # fit a: p(true) = 0.9 on the three class-0 cells, 0.5 on the class-1 cell; fit b: 0.6 and 0.9
    a = np.array([[0.9, 0.1]] * 3 + [[0.5, 0.5]])
    b = np.array([[0.6, 0.4]] * 3 + [[0.1, 0.9]])
    # plain mean: a (3 log(1/0.9) + log 2) / 4 = 0.252 < b (3 log(1/0.6) + log(1/0.9)) / 4 = 0.410
    # class 1 weighted 3: a (3 log(1/0.9) + 3 log 2) / 6 = 0.399 > b (3 log(1/0.6) + 3 log(1/0.9)) / 6 = 0.308
    assert list(module.weighted_greedy_weights([a, b], codes, np.ones(4), rounds=1)) == [1.0, 0.0]
    assert list(module.weighted_greedy_weights([a, b], codes, np.array([1.0, 1, 1, 3]), rounds=1)) == [0.0, 1.0]
    # unit weights: the package's greedy selection, round by round
    rng = np.random.default_rng(0)
    probas = [rng.dirichlet(np.ones(3), size=40) for _ in range(4)]
    labels = rng.integers(0, 3, size=40)
    np.testing.assert_array_equal(module.weighted_greedy_weights(probas, labels, np.ones(40)),
                                  greedy_ensemble_weights(probas, labels, rounds=10))


def test_bagged_selection_averages_the_choices_of_bootstrap_samples(monkeypatch):
    """benchmarks/diagnose_bagged_selection.py: a fit better on every cell wins every bag; otherwise the weights
    are a reproducible mean of bag choices (multiples of 1 / (bags * rounds)) summing to 1."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    module = _load_benchmark("diagnose_bagged_selection")
    codes = np.array([0, 1, 0, 1, 1])
    better = np.array([[0.8, 0.2], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    worse = np.array([[0.6, 0.4], [0.5, 0.5], [0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])  # lower p(true) on every cell
    # the mixture of the two is worse than `better` alone on every cell, so no round of any bag adds `worse`
    assert list(module.bagged_weights([worse, better], codes, bags=7)) == [0.0, 1.0]
    rng = np.random.default_rng(1)
    probas = [rng.dirichlet(np.ones(3), size=30) for _ in range(3)]
    labels = rng.integers(0, 3, size=30)
    weights = module.bagged_weights(probas, labels, bags=4, rounds=5, random_state=3)
    assert weights.sum() == pytest.approx(1.0) and np.allclose(weights * 20, np.round(weights * 20))
    np.testing.assert_array_equal(weights, module.bagged_weights(probas, labels, bags=4, rounds=5, random_state=3))


def test_standard_error_of_paired_differences(monkeypatch):
    """benchmarks/spatial_annotation.py: std (ddof=1) / sqrt(n) by hand; NaN below two values."""
    import pandas as pd

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    module = _load_benchmark("spatial_annotation")
    # 1, 2, 3: sample variance ((1)^2 + 0 + 1^2) / 2 = 1 -> SE 1 / sqrt(3)
    assert module.standard_error(pd.Series([1.0, 2.0, 3.0])) == pytest.approx(1 / 3**0.5)
    assert module.standard_error(np.array([1.0, 2.0, 3.0])) == pytest.approx(1 / 3**0.5)
    assert np.isnan(module.standard_error(pd.Series([0.5])))
