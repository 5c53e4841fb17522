"""Text encoders of the REFINE text protocol: a plain hashing word tokenizer and a CLS transformer.

The paper's source is a 6-layer transformer encoder (d 512, 8 heads, feed-forward 1024, a learned CLS
token, max_len 256) trained from scratch, with a feature head ``Linear(512 -> 2560)`` + ReLU giving
``f_rep``. :class:`TextTransformer` is that encoder (its output is the CLS state, ``out_dim = d_model``);
:class:`TextSourceFeatures` adds the feature head.

:class:`HashingTokenizer` needs no fitted vocabulary: a word's id is a stable hash (CRC-32) of its lower-cased
form, so source and target models read the same ids and nothing is learned from test text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["CLS_ID", "PAD_ID", "HashingTokenizer", "TextSourceFeatures", "TextTransformer"]

PAD_ID = 0
CLS_ID = 1
_N_SPECIAL = 2
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


class HashingTokenizer:
    """Lower-case words (letters, digits, inner apostrophes) plus ``!`` and ``?``, hashed to ids.

    Parameters
    ----------
    vocab_size
        Number of ids including the two special ones (``PAD_ID`` 0, ``CLS_ID`` 1).
    max_len
        Sequence length including the CLS token; longer texts are truncated, shorter ones padded.
    """

    def __init__(self, vocab_size: int = 2**15, max_len: int = 256) -> None:
        if vocab_size <= _N_SPECIAL or max_len < 2:
            raise ValueError(f"need vocab_size > {_N_SPECIAL} and max_len >= 2, got {vocab_size}, {max_len}.")
        self.vocab_size = vocab_size
        self.max_len = max_len

    def words(self, text: str) -> list[str]:
        """The word tokens of ``text``."""
        return _WORD.findall(text.lower())

    def token_id(self, word: str) -> int:
        """Stable id of one word (independent of the Python hash seed)."""
        return _N_SPECIAL + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - _N_SPECIAL)

    def __call__(self, texts: Iterable[str]) -> torch.Tensor:
        """``(n, max_len)`` int64 ids: CLS, the first ``max_len - 1`` words, then padding."""
        rows = []
        for text in texts:
            ids = [CLS_ID, *(self.token_id(w) for w in self.words(text)[: self.max_len - 1])]
            rows.append(ids + [PAD_ID] * (self.max_len - len(ids)))
        if not rows:
            return torch.zeros((0, self.max_len), dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)


class TextTransformer(nn.Module):
    """Transformer encoder over token ids; ``h(x)`` is the final state of the CLS token (position 0).

    Parameters
    ----------
    vocab_size, max_len
        As in :class:`HashingTokenizer`.
    d_model, n_heads, dim_feedforward, n_layers, dropout
        Transformer sizes (paper: 512, 8, 1024, 6, 0.1).
    """

    def __init__(
        self,
        vocab_size: int = 2**15,
        max_len: int = 256,
        *,
        d_model: int = 512,
        n_heads: int = 8,
        dim_feedforward: int = 1024,
        n_layers: int = 6,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}.")
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.position = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model
        self.max_len = max_len

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.shape[1] > self.max_len:
            raise ValueError(f"expected (n, <= {self.max_len}) token ids, got shape {tuple(ids.shape)}.")
        ids = ids.long()
        hidden = self.embed(ids) + self.position[:, : ids.shape[1]]
        hidden = self.encoder(hidden, src_key_padding_mask=ids == PAD_ID)
        return self.norm(hidden[:, 0])


class TextSourceFeatures(nn.Module):
    """The text source's ``f_rep``: :class:`TextTransformer` then ``Linear(d -> feature_dim)`` + ReLU."""

    def __init__(self, transformer: TextTransformer, feature_dim: int = 2560) -> None:
        super().__init__()
        self.transformer = transformer
        self.fc = nn.Linear(transformer.out_dim, feature_dim)
        self.act = nn.ReLU()
        self.out_dim = feature_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.transformer(ids)))
