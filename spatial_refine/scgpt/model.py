"""The scGPT embedding forward pass (eval mode): token encoders, post-norm encoder layers, CLS output.

Module and parameter names equal the canonical checkpoint keys, so a checked state_dict loads with
``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VALUE_CLAMP, ScGPTConfig

__all__ = ["ScGPTEncoder"]


class GeneEncoder(nn.Module):
    """Gene token: ``LayerNorm(Embedding(id))``."""

    def __init__(self, n_tokens: int, d: int, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, d, padding_idx=pad_id)
        self.enc_norm = nn.LayerNorm(d)

    def forward(self, ids: Tensor) -> Tensor:
        return self.enc_norm(self.embedding(ids))


class ContinuousValueEncoder(nn.Module):
    """Value token: ``LayerNorm(Linear(ReLU(Linear(min(value, 512)))))``."""

    def __init__(self, d: int, max_value: float = VALUE_CLAMP):
        super().__init__()
        self.linear1 = nn.Linear(1, d)
        self.linear2 = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.max_value = max_value

    def forward(self, values: Tensor) -> Tensor:
        x = values.unsqueeze(-1).clamp(max=self.max_value)
        return self.norm(self.linear2(F.relu(self.linear1(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with packed ``[Q; K; V]`` input projection and PyTorch's SDPA kernel."""

    def __init__(self, d: int, nheads: int):
        super().__init__()
        self.nheads = nheads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d))
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: Tensor, attn_mask: Tensor | None, first_query_only: bool = False) -> Tensor:
        b, length, d = x.shape
        h = self.nheads
        w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
        b_q, b_kv = self.in_proj_bias.split([d, 2 * d])
        queries = x[:, :1] if first_query_only else x
        q = F.linear(queries, w_q, b_q).view(b, queries.shape[1], h, d // h).transpose(1, 2)
        k, v = F.linear(x, w_kv, b_kv).view(b, length, 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, queries.shape[1], d))


class EncoderLayer(nn.Module):
    """Post-norm layer: ``h = LN1(x + MHA(x))``, ``out = LN2(h + Linear2(ReLU(Linear1(h))))``."""

    def __init__(self, d: int, nheads: int, d_hid: int):
        super().__init__()
        self.self_attn = SelfAttention(d, nheads)
        self.linear1 = nn.Linear(d, d_hid)
        self.linear2 = nn.Linear(d_hid, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x: Tensor, attn_mask: Tensor | None, first_query_only: bool = False) -> Tensor:
        residual = x[:, :1] if first_query_only else x
        h = self.norm1(residual + self.self_attn(x, attn_mask, first_query_only))
        return self.norm2(h + self.linear2(F.relu(self.linear1(h))))


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` without a final norm."""

    def __init__(self, d: int, nheads: int, d_hid: int, nlayers: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d, nheads, d_hid) for _ in range(nlayers))

    def forward(self, x: Tensor, attn_mask: Tensor | None, cls_only: bool = False) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, first_query_only=cls_only and i == last)
        return x


class ScGPTEncoder(nn.Module):
    """Frozen scGPT encoder producing L2-normalised CLS cell embeddings.

    Parameters
    ----------
    config
        Hyper-parameters (``embsize``, ``nheads``, ``d_hid``, ``nlayers``).
    n_tokens
        Vocabulary size.
    pad_id
        Id of the padding token.
    """

    def __init__(self, config: ScGPTConfig, n_tokens: int, pad_id: int):
        super().__init__()
        d = config.embsize
        self.config = config
        self.pad_id = pad_id
        self.encoder = GeneEncoder(n_tokens, d, pad_id)
        self.value_encoder = ContinuousValueEncoder(d)
        self.transformer_encoder = TransformerEncoder(d, config.nheads, config.d_hid, config.nlayers)

    @classmethod
    def from_state_dict(
        cls, config: ScGPTConfig, n_tokens: int, pad_id: int, state: Mapping[str, Tensor]
    ) -> ScGPTEncoder:
        """Build the module around checked canonical tensors without a throw-away random init.

        Parameters
        ----------
        config, n_tokens, pad_id
            As for the constructor.
        state
            Exactly the embedding-path tensors under canonical names.
        """
        with torch.device("meta"):
            model = cls(config, n_tokens, pad_id)
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval().requires_grad_(False)

    def _attn_mask(self, padding_mask: Tensor | None) -> Tensor | None:
        if padding_mask is None or not bool(padding_mask.any()):
            return None
        # SDPA boolean masks mark the keys that take part; broadcast over heads and queries.
        return (~padding_mask)[:, None, None, :]

    def encode(self, gene_ids: Tensor, values: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Outputs of the last layer at every position, shape ``(batch, length, embsize)``.

        Parameters
        ----------
        gene_ids
            ``(batch, length)`` token ids, ``<cls>`` first.
        values
            ``(batch, length)`` binned values, ``pad_value`` at ``<cls>`` and padding.
        padding_mask
            ``(batch, length)`` boolean, ``True`` at padding positions.
        """
        x = self.encoder(gene_ids) + self.value_encoder(values)
        return self.transformer_encoder(x, self._attn_mask(padding_mask))

    def forward(self, gene_ids: Tensor, values: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """L2-normalised output at position 0 (``<cls>``), shape ``(batch, embsize)``, in float32.

        Only the ``<cls>`` query is computed in the last layer (keys and values use every token): the
        result equals ``encode(...)[:, 0]``.

        Parameters
        ----------
        gene_ids, values, padding_mask
            As for :meth:`encode`.
        """
        x = self.encoder(gene_ids) + self.value_encoder(values)
        cls = self.transformer_encoder(x, self._attn_mask(padding_mask), cls_only=True)[:, 0]
        return F.normalize(cls.float(), dim=-1)
