"""The token vocabulary of a checkpoint (``vocab.json``: token -> integer id)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["GeneVocab"]


class GeneVocab(Mapping[str, int]):
    """Token -> id mapping with the special tokens resolved.

    The ids must be exactly ``0 .. n-1`` (each once); the order of the keys in the file is irrelevant.
    Tokens written ``<...>`` are special (``<pad>``, ``<cls>``, ``<eoc>``) and never match a gene.

    Parameters
    ----------
    token_to_id
        The mapping as read from ``vocab.json``.
    pad_token, cls_token
        Names of the padding and cell (CLS) tokens; both must be present.
    """

    def __init__(self, token_to_id: Mapping[str, int], *, pad_token: str = "<pad>", cls_token: str = "<cls>"):
        if not isinstance(token_to_id, Mapping) or not token_to_id:
            raise ValueError("vocab.json must hold a non-empty JSON object mapping tokens to integer ids.")
        ids: dict[str, int] = {}
        for token, idx in token_to_id.items():
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise ValueError(f"vocab.json: id of token {token!r} is {idx!r}, not an integer.")
            ids[str(token)] = idx
        n = len(ids)
        seen = sorted(ids.values())
        if seen != list(range(n)):
            raise ValueError(
                f"vocab.json: ids must be 0..{n - 1}, each used once (found min {seen[0]}, max {seen[-1]}, "
                f"{len(set(seen))} distinct); the file does not belong to an official checkpoint."
            )
        for name, token in (("pad", pad_token), ("cls", cls_token)):
            if token not in ids:
                raise ValueError(f"vocab.json has no {name} token {token!r}.")
        self._ids = ids
        self.pad_token = pad_token
        self.cls_token = cls_token
        self.pad_id = ids[pad_token]
        self.cls_id = ids[cls_token]

    @classmethod
    def from_json(cls, path: str | Path, *, pad_token: str = "<pad>", cls_token: str = "<cls>") -> GeneVocab:
        """Read ``vocab.json``.

        Parameters
        ----------
        path
            Path to the file.
        pad_token, cls_token
            Names of the padding and CLS tokens.
        """
        path = Path(path)
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); re-download the checkpoint folder.") from err
        return cls(mapping, pad_token=pad_token, cls_token=cls_token)

    @staticmethod
    def is_special(token: str) -> bool:
        """Whether ``token`` is a special token such as ``<pad>``."""
        return token.startswith("<") and token.endswith(">")

    def gene_id(self, symbol: str) -> int | None:
        """Id of a gene symbol (exact, case-sensitive), or ``None`` for unknown and special tokens."""
        if self.is_special(symbol):
            return None
        return self._ids.get(symbol)

    def __getitem__(self, token: str) -> int:
        return self._ids[token]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"GeneVocab({len(self)} tokens, pad={self.pad_id}, cls={self.cls_id})"
