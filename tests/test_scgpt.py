"""Tests of the scGPT subpackage: loading, forward pass, tokenization, AnnData driver, bad input.

Expectations are independent of the implementation: reference models are assembled here from plain
``torch.nn`` modules, bins are written out by hand, and invariances are checked end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch import nn

import spatial_refine as sr
from spatial_refine.scgpt import (
    CellTokenizer,
    CheckpointError,
    GeneVocab,
    ScGPTConfig,
    bin_expression,
    load_pretrained,
    match_genes,
    normalize_keys,
    pad_batch,
    write_random_checkpoint,
)

D, NHEADS, D_HID, NLAYERS = 32, 4, 48, 2
GENES = [f"GENE{i}" for i in range(40)]
UNKNOWN = ["UNK1", "UNK2", "UNK3", "UNK4", "UNK5"]
VAR_NAMES = GENES[:20] + UNKNOWN + GENES[20:]  # unknown genes in the middle: column mapping matters
MAX_LEN = 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest single-threaded (and do not fight over a shared machine's cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(path: Path, **kwargs) -> Path:
    opts = {"embsize": D, "nheads": NHEADS, "d_hid": D_HID, "nlayers": NLAYERS, "seed": 0, **kwargs}
    return write_random_checkpoint(path, GENES, **opts)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("ckpt") / "scGPT_tiny")


def make_adata(n_cells: int = 60, seed: int = 0) -> ad.AnnData:
    """Integer counts (many ties), some log-normalised rows, long cells, and two cells without genes."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_cells, len(VAR_NAMES)), dtype=np.float32)
    for i in range(n_cells):
        k = int(rng.integers(1, len(VAR_NAMES)))
        cols = rng.choice(len(VAR_NAMES), size=k, replace=False)
        dense[i, cols] = rng.poisson(1.5, size=k) + 1
    dense[5:10] = np.log1p(dense[5:10] * 1.7)
    dense[3] = 0
    dense[3, 20:25] = 2.0  # expresses only the unknown genes
    dense[4] = 0  # expresses nothing
    obs = pd.DataFrame(
        {"batch": [("a", "b")[i % 2] for i in range(n_cells)]}, index=[f"cell{i}" for i in range(n_cells)]
    )
    var = pd.DataFrame({"symbol": VAR_NAMES}, index=VAR_NAMES)
    adata = ad.AnnData(sp.csr_matrix(dense), obs=obs, var=var)
    adata.layers["counts"] = adata.X.copy()
    return adata


def embed(adata: ad.AnnData, model_dir: Path, **kwargs) -> np.ndarray:
    # on the CPU unless asked: the references here are float32 (on CUDA "auto" precision is fp16 autocast)
    opts = {"max_length": MAX_LEN, "batch_size": 8, "progress": False, "device": "cpu", **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = sr.tl.scgpt_embed(adata, model_dir, copy=True, **opts)
    return out.obsm["X_scGPT"]


def raw_state(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "best_model.pt", map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- reference model (plain torch.nn)


class Reference(nn.Module):
    """scGPT's embedding path assembled from stock PyTorch modules."""

    def __init__(self, state: dict[str, torch.Tensor], n_tokens: int, pad_id: int):
        super().__init__()
        self.emb = nn.Embedding(n_tokens, D, padding_idx=pad_id)
        self.emb_norm = nn.LayerNorm(D)
        self.v1, self.v2, self.v_norm = nn.Linear(1, D), nn.Linear(D, D), nn.LayerNorm(D)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(D, NHEADS, D_HID, dropout=0.0, batch_first=True)
            for _ in range(NLAYERS)
        )
        # The official whole-human files use flash-attn's `Wqkv` names; PyTorch calls them in_proj_*.
        own = {
            "emb.weight": state["encoder.embedding.weight"],
            "emb_norm.weight": state["encoder.enc_norm.weight"],
            "emb_norm.bias": state["encoder.enc_norm.bias"],
        }
        for ours, theirs in (("v1", "linear1"), ("v2", "linear2"), ("v_norm", "norm")):
            for p in ("weight", "bias"):
                own[f"{ours}.{p}"] = state[f"value_encoder.{theirs}.{p}"]
        for i in range(NLAYERS):
            src = f"transformer_encoder.layers.{i}."
            dst = f"layers.{i}."
            own[dst + "self_attn.in_proj_weight"] = state[src + "self_attn.Wqkv.weight"]
            own[dst + "self_attn.in_proj_bias"] = state[src + "self_attn.Wqkv.bias"]
            for name in ("self_attn.out_proj", "linear1", "linear2", "norm1", "norm2"):
                for p in ("weight", "bias"):
                    own[f"{dst}{name}.{p}"] = state[f"{src}{name}.{p}"]
        self.load_state_dict(own, strict=True)
        self.eval()

    @torch.no_grad()
    def forward(self, ids, values, pad_mask):
        x = self.emb_norm(self.emb(ids))
        v = values.unsqueeze(-1).clamp(max=512.0)
        x = x + self.v_norm(self.v2(torch.relu(self.v1(v))))
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad_mask)
        return x


def _reference_for(model_dir: Path) -> tuple[Reference, dict[str, int]]:
    vocab = json.loads((model_dir / "vocab.json").read_text())
    return Reference(raw_state(model_dir), len(vocab), vocab["<pad>"]), vocab


def _hand_bins(values: np.ndarray) -> np.ndarray:
    """Bins of a cell without tied edges: number of the 50 quantile edges <= value."""
    edges = np.quantile(values, np.linspace(0, 1, 50))
    return np.array([(edges <= v).sum() for v in values])


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("style", ["in_proj", "_impl"])
def test_every_key_style_gives_identical_embeddings(tmp_path, model_dir, style):
    other = _write(tmp_path / style, key_style=style)
    keys = set(raw_state(other))
    expected_key = {
        "in_proj": "transformer_encoder.layers.0.self_attn.in_proj_weight",
        "_impl": "transformer_encoder.layers.0.self_attn._impl.Wqkv.weight",
    }[style]
    assert expected_key in keys
    assert "transformer_encoder.layers.0.self_attn.Wqkv.weight" in raw_state(model_dir)
    adata = make_adata(20)
    np.testing.assert_array_equal(embed(adata, other), embed(adata, model_dir))


def test_normalize_keys_renames_and_strips_module_prefix():
    t = torch.zeros(1)
    state = {
        "module.transformer_encoder.layers.0.self_attn.Wqkv.weight": t,
        "module.transformer_encoder.layers.1.self_attn._impl.Wqkv.bias": t,
        "module.transformer_encoder.layers.1.self_attn._impl.out_proj.weight": t,
        "module.decoder.fc.0.weight": t,
    }
    assert list(normalize_keys(state)) == [
        "transformer_encoder.layers.0.self_attn.in_proj_weight",
        "transformer_encoder.layers.1.self_attn.in_proj_bias",
        "transformer_encoder.layers.1.self_attn.out_proj.weight",
        "decoder.fc.0.weight",
    ]
    both = {"a.self_attn.Wqkv.weight": t, "a.self_attn.in_proj_weight": t}
    with pytest.raises(CheckpointError, match="both map to"):
        normalize_keys(both)


@pytest.mark.filterwarnings("ignore:.*express none of the matched genes")
def test_missing_tensors_are_refused_by_name(tmp_path, model_dir):
    bad = _write(tmp_path / "bad")
    state = raw_state(bad)
    del state["transformer_encoder.layers.1.linear2.bias"]
    del state["transformer_encoder.layers.0.self_attn.Wqkv.weight"]
    torch.save(state, bad / "best_model.pt")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(bad)
    msg = str(err.value)
    assert "2 missing" in msg
    assert "transformer_encoder.layers.1.linear2.bias" in msg
    assert "transformer_encoder.layers.0.self_attn.in_proj_weight" in msg
    with pytest.raises(CheckpointError, match=r"layers\.1\.linear2\.bias"):
        sr.tl.scgpt_embed(make_adata(10), bad, progress=False)


def test_misshaped_tensor_is_refused_with_shapes(tmp_path):
    bad = _write(tmp_path / "bad")
    state = raw_state(bad)
    state["value_encoder.linear2.weight"] = torch.zeros(D, D - 1)
    torch.save(state, bad / "best_model.pt")
    with pytest.raises(
        CheckpointError, match=r"value_encoder\.linear2\.weight: expected \(32, 32\), found \(32, 31\)"
    ):
        load_pretrained(bad)


def test_vocab_that_does_not_fit_the_embedding_is_refused(tmp_path):
    bad = _write(tmp_path / "bad")
    vocab = json.loads((bad / "vocab.json").read_text())
    vocab["EXTRA"] = len(vocab)
    (bad / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(
        CheckpointError, match=r"encoder\.embedding\.weight: expected \(44, 32\), found \(43, 32\)"
    ):
        load_pretrained(bad)


def test_layers_beyond_nlayers_are_refused(tmp_path):
    bad = _write(tmp_path / "bad", extra_args={"nlayers": 1})
    state = raw_state(_write(tmp_path / "two"))  # a 2-layer file under a 1-layer args.json
    torch.save(state, bad / "best_model.pt")
    with pytest.raises(CheckpointError, match=r"encoder layer\(s\) \[1\] beyond args.json's nlayers=1"):
        load_pretrained(bad)


def test_non_finite_weights_are_refused(tmp_path):
    bad = _write(tmp_path / "bad")
    state = raw_state(bad)
    state["value_encoder.linear2.weight"][0, 0] = float("nan")
    torch.save(state, bad / "best_model.pt")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values: value_encoder\.linear2\.weight"):
        load_pretrained(bad)


def test_a_long_mismatch_names_a_few_tensors_and_counts_the_rest(tmp_path):
    bad = _write(tmp_path / "bad")
    state = raw_state(bad)
    for key in [k for k in state if k.startswith("transformer_encoder.layers.")]:
        del state[key]
    torch.save(state, bad / "best_model.pt")
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\): .*\.\.\. and \d+ more") as err:
        load_pretrained(bad)
    assert len(str(err.value)) < 2000


@pytest.mark.parametrize(
    ("args", "message"),
    [({"pad_value": "abc"}, "'pad_value' must be a finite number"),
     ({"pad_value": None}, "'pad_value' must be a finite number"),
     ({"pad_value": float("nan")}, "'pad_value' must be a finite number"),
     ({"pad_token": None}, "'pad_token' must be a string")],
)
def test_odd_args_json_values_are_refused_naming_args_json(tmp_path, args, message):
    bad = _write(tmp_path / "bad")
    original = json.loads((bad / "args.json").read_text())
    (bad / "args.json").write_text(json.dumps({**original, **args}))  # NaN is written as JSON's NaN literal
    with pytest.raises(ValueError, match=f"args.json: {message}"):
        load_pretrained(bad)


def test_a_vocab_that_is_not_utf8_names_the_file(tmp_path):
    bad = _write(tmp_path / "bad")
    (bad / "vocab.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"vocab\.json is not valid JSON .*utf-8"):
        load_pretrained(bad)


def test_unknown_args_and_extra_heads_are_tolerated(tmp_path, model_dir):
    other = _write(tmp_path / "finetuned", extra_args={"cell_emb_style": "cls", "new_option": {"a": [1, 2]}})
    state = raw_state(other)
    state["cls_decoder._decoder.0.weight"] = torch.ones(7, 3)  # fine-tuned classifier head
    torch.save(state, other / "best_model.pt")
    loaded = load_pretrained(other)
    assert loaded.config.extra["new_option"] == {"a": [1, 2]}
    assert "cls_decoder._decoder.0.weight" in loaded.ignored_keys
    assert {"decoder.fc.0.weight", "mvc_decoder.W.weight", "flag_encoder.weight"} <= set(loaded.ignored_keys)
    adata = make_adata(12)
    np.testing.assert_array_equal(embed(adata, other), embed(adata, model_dir))


def test_minimal_args_json_of_organ_checkpoints_loads(tmp_path, model_dir):
    """Organ checkpoints carry fewer keys: the four sizes and the pad token are enough."""
    organ = _write(tmp_path / "organ")
    minimal = {"embsize": D, "nheads": NHEADS, "d_hid": D_HID, "nlayers": NLAYERS, "pad_token": "<pad>"}
    (organ / "args.json").write_text(json.dumps(minimal))
    adata = make_adata(12)
    np.testing.assert_array_equal(embed(adata, organ), embed(adata, model_dir))


def test_half_precision_weights_load_as_float32(tmp_path, model_dir):
    half = _write(tmp_path / "half")
    torch.save({k: v.half() for k, v in raw_state(half).items()}, half / "best_model.pt")
    model = load_pretrained(half).model
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all" * 10, "truncate"],
    ids=["empty", "garbage", "truncated"],
)
def test_corrupted_checkpoint_gives_clear_error(tmp_path, model_dir, content):
    bad = _write(tmp_path / "bad")
    path = bad / "best_model.pt"
    data = path.read_bytes()[: len(path.read_bytes()) // 2] if content == "truncate" else content
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="Could not read the checkpoint"):
        load_pretrained(bad)


def test_pickled_objects_are_never_unpickled(tmp_path):
    bad = _write(tmp_path / "bad")
    torch.save({"weights": raw_state(bad), "when": pd.Timestamp("2024-01-01")}, bad / "best_model.pt")
    with pytest.raises(CheckpointError, match="Could not read the checkpoint"):
        load_pretrained(bad)
    torch.save([torch.zeros(2)], bad / "best_model.pt")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_pretrained(bad)


def test_missing_files_are_named(tmp_path):
    folder = _write(tmp_path / "incomplete")
    (folder / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks vocab\.json"):
        load_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sr.tl.scgpt_embed(make_adata(5), tmp_path / "nowhere", progress=False)
    broken = _write(tmp_path / "broken_json")
    (broken / "args.json").write_text('{"embsize": 32,')
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_pretrained(broken)


def test_config_and_vocab_validation():
    base = {"embsize": 512.0, "nheads": 8, "d_hid": 512, "nlayers": 12}
    cfg = ScGPTConfig.from_dict({**base, "unknown": 1})
    assert (cfg.embsize, cfg.pad_value, cfg.head_dim) == (512, -2.0, 64)
    with pytest.raises(ValueError, match=r"lacks the required key\(s\) \['nlayers'\]"):
        ScGPTConfig.from_dict({k: v for k, v in base.items() if k != "nlayers"})
    with pytest.raises(ValueError, match="divisible"):
        ScGPTConfig.from_dict({**base, "nheads": 7})
    with pytest.raises(ValueError, match="input_emb_style='category' is not supported"):
        ScGPTConfig.from_dict({**base, "input_emb_style": "category"})
    with pytest.raises(ValueError, match=r"ids must be 0\.\.2"):
        GeneVocab({"A": 0, "<pad>": 1, "<cls>": 3})
    with pytest.raises(ValueError, match="no cls token"):
        GeneVocab({"A": 0, "<pad>": 1})
    vocab = GeneVocab({"<cls>": 2, "A": 0, "<pad>": 1})
    assert (vocab.pad_id, vocab.cls_id, vocab.gene_id("A"), vocab.gene_id("<pad>")) == (1, 2, 0, None)


# --------------------------------------------------------------------------- forward pass


def test_forward_equals_stock_pytorch_reference_with_padding(model_dir):
    reference, vocab = _reference_for(model_dir)
    model = load_pretrained(model_dir).model
    cls, pad = vocab["<cls>"], vocab["<pad>"]
    cells = [
        ([cls, 3, 17, 5, 39, 0, 22], [-2.0, 1, 50, 7, 23, 2, 9000.0]),  # 9000: the value clamp at 512
        ([cls, 8, 1, 30], [-2.0, 4, 4, 12]),
        ([cls], [-2.0]),  # a cell without genes: <cls> alone
    ]
    length = max(len(c[0]) for c in cells)
    ids = torch.full((3, length), pad)
    vals = torch.full((3, length), -2.0)
    mask = torch.ones(3, length, dtype=torch.bool)
    for i, (c_ids, c_vals) in enumerate(cells):
        ids[i, : len(c_ids)] = torch.tensor(c_ids)
        vals[i, : len(c_vals)] = torch.tensor(c_vals)
        mask[i, : len(c_ids)] = False

    expected = reference(ids, vals, mask)
    got_all = model.encode(ids, vals, mask)
    for i, (c_ids, _) in enumerate(cells):
        torch.testing.assert_close(got_all[i, : len(c_ids)], expected[i, : len(c_ids)], atol=1e-5, rtol=1e-5)
    expected_cls = torch.nn.functional.normalize(expected[:, 0], dim=-1)
    torch.testing.assert_close(model(ids, vals, mask), expected_cls, atol=1e-5, rtol=1e-5)
    # each cell alone, unpadded, gives its row of the padded batch
    for i, (c_ids, c_vals) in enumerate(cells):
        alone = model(torch.tensor([c_ids]), torch.tensor([c_vals]))
        torch.testing.assert_close(alone[0], expected_cls[i], atol=1e-5, rtol=1e-5)


def test_end_to_end_equals_hand_tokenized_reference(model_dir):
    """A cell without ties and below max_length has deterministic tokens: compare the whole pipeline."""
    reference, vocab = _reference_for(model_dir)
    values = np.array([0.5, 3.0, 1.25, 7.5, 2.0, 0.75], dtype=np.float32)
    genes = ["GENE12", "GENE3", "GENE30", "GENE7", "GENE21", "GENE0"]
    adata = ad.AnnData(values[None, :], var=pd.DataFrame(index=genes))
    got = embed(adata, model_dir)
    ids = torch.tensor([[vocab["<cls>"], *(vocab[g] for g in genes)]])
    vals = torch.tensor([[-2.0, *_hand_bins(values).astype(float)]], dtype=torch.float32)
    expected = torch.nn.functional.normalize(
        reference(ids, vals, torch.zeros_like(ids, dtype=torch.bool))[:, 0]
    )
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert got.dtype == np.float32


# --------------------------------------------------------------------------- tokenization


def _never():
    raise AssertionError("no random draw is needed without ties")


def test_binning_hand_computed_cases_without_ties():
    # 50 distinct values: the 50 edges are the values themselves, so the bins are the ranks.
    np.testing.assert_array_equal(bin_expression(np.arange(1.0, 51.0), _never), np.arange(1, 51))
    # [1, 2, 3]: edges 1 + 2i/49, i = 0..49; edges <= 2 are i = 0..24 (25 of them).
    np.testing.assert_array_equal(bin_expression(np.array([1.0, 2.0, 3.0]), _never), [1, 25, 50])
    # the order of the values is kept
    np.testing.assert_array_equal(bin_expression(np.array([2.0, 1.0]), _never), [50, 1])
    # [0.2, 0.4, 0.6, 0.8]: edges at positions 3i/49; value 0.4 (position 1) is above edges i <= 16 (17 edges),
    # value 0.6 (position 2) above edges i <= 32 (33 edges).
    np.testing.assert_array_equal(bin_expression(np.array([0.2, 0.4, 0.6, 0.8]), _never), [1, 17, 33, 50])


def test_binning_hand_computed_cases_with_ties():
    rng = np.random.default_rng(0)
    # [1, 1, 2]: edges at positions 2i/49 -> edges i = 0..24 equal 1 (25 tied edges), edge 49 = 2.
    draws = np.array([bin_expression(np.array([1.0, 1.0, 2.0]), rng) for _ in range(4000)])
    assert (draws[:, 2] == 50).all()
    assert set(np.unique(draws[:, :2])) == set(range(1, 26))
    counts = np.bincount(draws[:, :2].ravel(), minlength=26)[1:]
    assert counts.min() > 0.6 * 8000 / 25 and counts.max() < 1.4 * 8000 / 25  # uniform over 1..25
    # ten 5's then 6..45 (50 values): edges 0..9 are 5 (tied), edge i >= 10 is i - 4, so v >= 6 is bin v + 5.
    values = np.array([5.0] * 10 + list(range(6, 46)), dtype=float)
    many = np.array([bin_expression(values, rng) for _ in range(300)])
    np.testing.assert_array_equal(many[:, 10:], np.tile(np.arange(11, 51), (300, 1)))
    assert set(np.unique(many[:, :10])) == set(range(1, 11))
    # all equal: every one of the 50 edges ties, the bin is uniform over 1..50
    same = np.array([bin_expression(np.array([3.0, 3.0, 3.0]), rng) for _ in range(2000)])
    assert set(np.unique(same)) == set(range(1, 51))


def test_binning_is_reproducible_with_a_seed():
    values = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 4.0])
    a = bin_expression(values, np.random.default_rng(7))
    b = bin_expression(values, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert bin_expression(np.zeros(0), _never).shape == (0,)


def test_tokenizer_cls_first_and_subsampling_after_binning():
    tok = CellTokenizer(cls_id=99, pad_value=-2.0, max_length=5, random_state=3)
    genes = np.arange(10, 20)
    values = np.arange(1.0, 11.0)  # no ties: bins are a deterministic function of the values
    full_bins = dict(zip(genes.tolist(), _hand_bins(values).tolist()))
    cell = tok(genes, values)
    assert cell.gene_ids[0] == 99 and cell.values[0] == -2.0
    assert len(cell.gene_ids) == 5 and len(set(cell.gene_ids[1:].tolist())) == 4
    assert set(cell.gene_ids[1:].tolist()) <= set(genes.tolist())
    assert [full_bins[g] for g in cell.gene_ids[1:].tolist()] == cell.values[1:].tolist()  # binned before
    again = tok(genes, values)
    np.testing.assert_array_equal(again.gene_ids, cell.gene_ids)
    subsets = {
        tuple(CellTokenizer(99, -2.0, 5, random_state=s)(genes, values).gene_ids.tolist()) for s in range(20)
    }
    assert len(subsets) > 10
    short = tok(genes[:3], values[:3])
    assert short.gene_ids.tolist() == [99, 10, 11, 12] and short.values.tolist() == [-2.0, 1.0, 25.0, 50.0]
    empty = tok(np.zeros(0, dtype=np.int64), np.zeros(0))
    assert empty.gene_ids.tolist() == [99] and empty.values.tolist() == [-2.0]
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        CellTokenizer(99, -2.0, 1)


def test_pad_batch():
    tok = CellTokenizer(cls_id=9, pad_value=-2.0, max_length=10)
    cells = [tok(np.array([1, 2]), np.array([1.0, 2.0])), tok(np.array([], dtype=np.int64), np.array([]))]
    ids, vals, mask = pad_batch(cells, pad_id=8, pad_value=-2.0)
    assert ids.tolist() == [[9, 1, 2], [9, 8, 8]]
    assert vals.tolist() == [[-2.0, 1.0, 50.0], [-2.0, -2.0, -2.0]]
    assert mask.tolist() == [[False, False, False], [False, True, True]]


def test_gene_matching():
    vocab = GeneVocab({"CD3E": 0, "ACTB": 1, "<pad>": 2, "<cls>": 3, "Xist-like": 4})
    symbols = ["Actb", "CD3E", "<pad>", None, "MYGENE", "ACTB", "Cd3e"]
    exact = match_genes(symbols, vocab)
    assert exact.columns.tolist() == [1, 5] and exact.token_ids.tolist() == [0, 1]
    assert exact.unmatched == ["Actb", "<pad>", "None", "MYGENE", "Cd3e"] and exact.n_total == 7
    upper = match_genes(symbols, vocab, "upper")
    # ordered by token id then column; "ACTB" and "Actb" share token 1, "CD3E" and "Cd3e" token 0
    assert upper.columns.tolist() == [1, 6, 0, 5] and upper.token_ids.tolist() == [0, 0, 1, 1]
    assert sorted(upper.duplicated) == ["ACTB", "Actb", "CD3E", "Cd3e"]


# --------------------------------------------------------------------------- AnnData function


def test_outputs_and_provenance(model_dir):
    adata = make_adata()
    before = adata.copy()
    with pytest.warns(UserWarning, match="2 cell\\(s\\) express none of the matched genes"):
        result = sr.tl.scgpt_embed(adata, model_dir, max_length=MAX_LEN, random_state=5, progress=False, device="cpu")
    assert result is None
    emb = adata.obsm["X_scGPT"]
    assert emb.shape == (60, D) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    info = adata.uns["X_scGPT"]
    assert (
        info["checkpoint"]["sha256"] == hashlib.sha256((model_dir / "best_model.pt").read_bytes()).hexdigest()
    )
    assert (info["genes"]["n_matched"], info["genes"]["n_total"]) == (40, 45)
    assert list(info["genes"]["unmatched"]) == UNKNOWN
    assert info["params"]["random_state"] == 5 and info["params"]["max_length"] == MAX_LEN
    assert info["params"]["device"] == "cpu" and info["params"]["precision"] == "fp32"
    assert list(info["cells_without_genes"]) == ["cell3", "cell4"]
    expected_long = int(
        (np.asarray((adata.X[:, adata.var_names.isin(GENES)] != 0).sum(1)).ravel() > 15).sum()
    )
    assert info["n_cells_subsampled"] == expected_long > 0
    # nothing else was touched
    assert list(adata.obsm) == ["X_scGPT"] and list(adata.uns) == ["X_scGPT"]
    assert (adata.X != before.X).nnz == 0 and (adata.layers["counts"] != before.layers["counts"]).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    pd.testing.assert_frame_equal(adata.var, before.var)


def test_copy_returns_new_object_and_leaves_input_alone(model_dir):
    adata = make_adata(10)
    out = embed(adata, model_dir)
    assert out.shape == (10, D)
    assert "X_scGPT" not in adata.obsm and "X_scGPT" not in adata.uns


def test_cells_without_genes_get_the_cls_only_embedding(model_dir):
    adata = make_adata(12)
    emb = embed(adata, model_dir)
    loaded = load_pretrained(model_dir)
    cls_only = loaded.model(torch.tensor([[loaded.vocab.cls_id]]), torch.tensor([[-2.0]]))[0].numpy()
    np.testing.assert_allclose(emb[3], cls_only, atol=1e-6)
    np.testing.assert_allclose(emb[4], cls_only, atol=1e-6)
    assert np.isfinite(emb).all()


def test_independent_of_batch_size_bucketing_and_chunks(model_dir):
    adata = make_adata()
    ref = embed(adata, model_dir, batch_size=64)
    for kwargs in (
        {"batch_size": 1},
        {"batch_size": 7},
        {"batch_size": 8, "length_bucketing": False},
        {"batch_size": 3, "chunk_size": 5},
    ):
        np.testing.assert_allclose(embed(adata, model_dir, **kwargs), ref, atol=1e-5, err_msg=str(kwargs))


def test_permuting_cells_permutes_embeddings(model_dir):
    adata = make_adata()
    ref = embed(adata, model_dir)
    perm = np.random.default_rng(1).permutation(adata.n_obs)
    np.testing.assert_allclose(embed(adata[perm].copy(), model_dir), ref[perm], atol=1e-5)
    # a subset of the cells, or the genes in another column order, change nothing either
    np.testing.assert_allclose(embed(adata[10:20].copy(), model_dir), ref[10:20], atol=1e-5)
    cols = np.random.default_rng(2).permutation(adata.n_vars)
    np.testing.assert_allclose(embed(adata[:, cols].copy(), model_dir), ref, atol=1e-5)


def test_seed_changes_only_random_draws(model_dir):
    adata = make_adata()
    a, b = embed(adata, model_dir, random_state=0), embed(adata, model_dir, random_state=1)
    np.testing.assert_array_equal(a, embed(adata, model_dir, random_state=0))
    assert not np.allclose(a, b, atol=1e-4)  # ties and subsampling draw differently
    assert np.allclose(a[[3, 4]], b[[3, 4]])  # the <cls>-only cells have nothing to draw


def test_dense_sparse_layer_and_backed_agree(tmp_path, model_dir, monkeypatch):
    adata = make_adata()
    ref = embed(adata, model_dir)
    dense = adata.copy()
    dense.X = dense.X.toarray()
    np.testing.assert_allclose(embed(dense, model_dir), ref, atol=1e-5)
    monkeypatch.setattr("spatial_refine.scgpt.embed._DENSE_SLICE_VALUES", 3 * adata.n_vars)  # 3-row slices
    np.testing.assert_allclose(embed(dense, model_dir, chunk_size=10), ref, atol=1e-5)
    monkeypatch.undo()
    csc = adata.copy()
    csc.X = sp.csc_matrix(csc.X)
    np.testing.assert_allclose(embed(csc, model_dir), ref, atol=1e-5)
    no_x = adata.copy()
    no_x.X = sp.csr_matrix(no_x.shape, dtype=np.float32)
    np.testing.assert_allclose(embed(no_x, model_dir, layer="counts"), ref, atol=1e-5)
    by_column = adata.copy()
    by_column.var_names = [f"id{i}" for i in range(adata.n_vars)]
    np.testing.assert_allclose(embed(by_column, model_dir, gene_key="symbol"), ref, atol=1e-5)

    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr.tl.scgpt_embed(backed, model_dir, max_length=MAX_LEN, batch_size=8, chunk_size=16, progress=False)
    np.testing.assert_allclose(backed.obsm["X_scGPT"], ref, atol=1e-5)
    backed.file.close()
    dense.write_h5ad(path)  # backed dense (h5py dataset)
    backed = ad.read_h5ad(path, backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr.tl.scgpt_embed(backed, model_dir, max_length=MAX_LEN, batch_size=8, progress=False)
    np.testing.assert_allclose(backed.obsm["X_scGPT"], ref, atol=1e-5)
    backed.file.close()


def test_provenance_survives_h5ad_round_trip(tmp_path, model_dir):
    adata = make_adata(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr.tl.scgpt_embed(adata, model_dir, progress=False)
    adata.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(back.obsm["X_scGPT"], adata.obsm["X_scGPT"])
    assert back.uns["X_scGPT"]["checkpoint"]["sha256"] == adata.uns["X_scGPT"]["checkpoint"]["sha256"]


def test_upper_case_matching_for_mouse_symbols(model_dir):
    adata = make_adata(10)
    mouse = adata.copy()
    mouse.var_names = [g.capitalize() for g in VAR_NAMES]  # "Gene12", like mouse symbols
    with pytest.raises(ValueError, match=r"with gene_symbol_case='upper'.*40 genes match"):
        sr.tl.scgpt_embed(mouse, model_dir, progress=False)
    np.testing.assert_allclose(
        embed(mouse, model_dir, gene_symbol_case="upper"), embed(adata, model_dir), atol=1e-5
    )


# --------------------------------------------------------------------------- bad input


def _set(adata: ad.AnnData, row: int, gene: str, value: float) -> None:
    dense = adata.X.toarray()
    dense[row, VAR_NAMES.index(gene)] = value
    adata.X = sp.csr_matrix(dense)


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda a: _set(a, 0, "GENE0", np.nan), {}, "NaN or infinite values.*first in cell 'cell0'"),
        (lambda a: _set(a, 7, "GENE39", np.inf), {}, "NaN or infinite values.*first in cell 'cell7'"),
        (lambda a: _set(a, 2, "GENE5", -1.0), {}, "negative values .* not scaled"),
        (None, {"gene_key": "gene_symbols"}, "not a column of adata.var"),
        (None, {"layer": "raw"}, "not in adata.layers"),
        (None, {"max_length": 1}, "max_length must be an integer >= 2"),
        (None, {"batch_size": 0}, "batch_size must be a positive integer"),
        (None, {"random_state": -1}, "random_state must be a non-negative integer"),
        (None, {"gene_symbol_case": "lower"}, "gene_symbol_case must be"),
        (None, {"chunk_size": 0}, "chunk_size must be"),
        (None, {"precision": "fp16", "device": "cpu"}, "mixed precision"),
        (None, {"precision": "fp8"}, "precision must be"),
        (None, {"key_added": ""}, "key_added must be"),
    ],
)
def test_bad_input_is_refused_early(model_dir, mutate, kwargs, message):
    adata = make_adata(10)
    if mutate is not None:
        mutate(adata)
    with pytest.raises(ValueError, match=message):
        sr.tl.scgpt_embed(adata, model_dir, progress=False, **kwargs)


def test_bad_adata_shapes_and_matching(tmp_path, model_dir):
    with pytest.raises(ValueError, match="adata is empty"):
        sr.tl.scgpt_embed(make_adata(10)[:0].copy(), model_dir, progress=False)
    no_x = make_adata(6)
    no_x.X = None
    with pytest.raises(ValueError, match=r"adata\.X is None"):
        sr.tl.scgpt_embed(no_x, model_dir, progress=False)
    alien = ad.AnnData(
        np.ones((3, 2), dtype=np.float32), var=pd.DataFrame(index=["ENSG00000000003", "ENSG00000000005"])
    )
    with pytest.raises(ValueError, match=r"None of the 2 genes .* look like Ensembl ids"):
        sr.tl.scgpt_embed(alien, model_dir, progress=False)
    few = ad.AnnData(np.ones((3, 4), dtype=np.float32), var=pd.DataFrame(index=["GENE1", "A", "B", "C"]))
    with pytest.warns(UserWarning, match="Only 1/4 genes"):
        sr.tl.scgpt_embed(few, model_dir, progress=False)
    path = tmp_path / "b.h5ad"
    make_adata(6).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match="copy=True is not possible for a backed AnnData"):
        sr.tl.scgpt_embed(backed, model_dir, copy=True, progress=False)
    backed.file.close()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            sr.tl.scgpt_embed(make_adata(6), model_dir, device="cuda", progress=False)


def test_nan_in_unused_gene_is_ignored(model_dir):
    adata = make_adata(10)
    dense = adata.X.toarray()
    dense[:, VAR_NAMES.index("UNK2")] = np.nan
    adata.X = dense
    assert np.isfinite(embed(adata, model_dir)).all()


# --------------------------------------------------------------------------- real vocabulary and data


def _data_dir() -> Path:
    env = os.environ.get("SPATIAL_REFINE_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.data
def test_real_vocab_and_mouse_seqfish_slice(tmp_path):
    vocab_path = _data_dir() / "scgpt" / "vocab_default_census.json"
    h5ad = _data_dir() / "spatial" / "seqfish_lohoff_embryo_3embryos.h5ad"
    if not (vocab_path.is_file() and h5ad.is_file()):
        pytest.skip(f"real data not found under {_data_dir()} (set SPATIAL_REFINE_DATA_DIR)")
    census = json.loads(vocab_path.read_text())
    genes = sorted(census, key=census.get)
    assert [census[g] for g in genes] == list(range(len(genes))) == list(range(60694))
    folder = write_random_checkpoint(tmp_path / "human", genes, embsize=16, nheads=2, d_hid=16, nlayers=1)
    vocab = GeneVocab.from_json(folder / "vocab.json")
    assert (len(vocab), vocab.pad_id, vocab.cls_id, vocab["<eoc>"]) == (60697, 60694, 60695, 60696)
    assert all(vocab[g] == census[g] for g in ("CD3E", "ACTB", "GAPDH"))

    backed = ad.read_h5ad(h5ad, backed="r")
    adata = backed[:300].to_memory()
    backed.file.close()
    expected_matches = sum(g.upper() in census for g in adata.var_names)
    assert 300 < expected_matches <= adata.n_vars  # most of the 351 mouse genes have a human namesake
    with pytest.raises(ValueError, match="gene_symbol_case='upper'"):
        sr.tl.scgpt_embed(adata, folder, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr.tl.scgpt_embed(adata, folder, gene_symbol_case="upper", progress=False)
    info = adata.uns["X_scGPT"]
    assert info["genes"]["n_matched"] == expected_matches
    assert info["genes"]["n_total"] == 351
    emb = adata.obsm["X_scGPT"]
    assert emb.shape == (300, 16) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.unique(emb.round(4), axis=0).shape[0] > 250  # cells differ


@pytest.mark.data
def test_backed_real_counts_file_streams_like_in_memory(tmp_path):
    """osmFISH raw counts, the whole file read backed in small chunks, equal to the in-memory result."""
    vocab_path = _data_dir() / "scgpt" / "vocab_default_census.json"
    h5ad = _data_dir() / "spatial" / "osmfish_codeluppi_cortex.h5ad"
    if not (vocab_path.is_file() and h5ad.is_file()):
        pytest.skip(f"real data not found under {_data_dir()} (set SPATIAL_REFINE_DATA_DIR)")
    census = json.loads(vocab_path.read_text())
    folder = write_random_checkpoint(
        tmp_path / "human", sorted(census, key=census.get), embsize=16, nheads=2, d_hid=16, nlayers=1
    )
    opts = {"gene_symbol_case": "upper", "batch_size": 128, "progress": False}
    backed = ad.read_h5ad(h5ad, backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr.tl.scgpt_embed(backed, folder, chunk_size=500, **opts)
        in_memory = sr.tl.scgpt_embed(ad.read_h5ad(h5ad), folder, copy=True, **opts)
    np.testing.assert_allclose(backed.obsm["X_scGPT"], in_memory.obsm["X_scGPT"], atol=1e-5)
    assert backed.uns["X_scGPT"]["genes"]["n_matched"] == sum(g.upper() in census for g in backed.var_names)
    backed.file.close()


# --------------------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these on one)")
def test_cuda_embeddings_match_the_cpu_in_fp32_and_fp16(model_dir):
    adata = make_adata(40)
    reference = embed(adata, model_dir, random_state=1)
    fp32 = embed(adata, model_dir, random_state=1, device="cuda", precision="fp32")
    np.testing.assert_allclose(fp32, reference, atol=1e-4)
    fp16 = embed(adata, model_dir, random_state=1, device="cuda")  # "auto": fp16 autocast, as scGPT runs
    np.testing.assert_allclose(fp16, reference, atol=2e-2)
    assert fp16.dtype == np.float32 and np.isfinite(fp16).all()
