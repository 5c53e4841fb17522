"""A checkpoint folder (``args.json``, ``vocab.json``, ``best_model.pt``) turned into a ready encoder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import extract_embedding_state, load_state_dict
from .config import CLS_TOKEN, ScGPTConfig
from .model import ScGPTEncoder
from .vocab import GeneVocab

__all__ = ["CHECKPOINT_FILES", "CheckpointFiles", "PretrainedScGPT", "file_sha256", "load_pretrained"]

#: The fixed file names of an official checkpoint folder.
CHECKPOINT_FILES = ("args.json", "vocab.json", "best_model.pt")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class CheckpointFiles:
    """Paths of the three files of a checkpoint folder (checked to exist)."""

    directory: Path
    args: Path
    vocab: Path
    weights: Path

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> CheckpointFiles:
        """Locate the files in ``model_dir``.

        Parameters
        ----------
        model_dir
            A folder downloaded from the scGPT model zoo, e.g. ``scGPT_human``.
        """
        directory = Path(model_dir).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(
                f"scGPT model folder {str(directory)!r} does not exist or is not a folder. Download a "
                f"checkpoint folder (e.g. whole-human) holding {', '.join(CHECKPOINT_FILES)}."
            )
        missing = [name for name in CHECKPOINT_FILES if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"scGPT model folder {str(directory)!r} lacks {', '.join(missing)}; a checkpoint folder "
                f"holds {', '.join(CHECKPOINT_FILES)} (names fixed)."
            )
        return cls(directory, *(directory / name for name in CHECKPOINT_FILES))

    def read_config(self) -> ScGPTConfig:
        """Parse ``args.json``."""
        return ScGPTConfig.from_json(self.args)

    def read_vocab(self, config: ScGPTConfig) -> GeneVocab:
        """Parse ``vocab.json`` with the padding token named in ``args.json``."""
        return GeneVocab.from_json(self.vocab, pad_token=config.pad_token, cls_token=CLS_TOKEN)


@dataclass
class PretrainedScGPT:
    """A loaded checkpoint: configuration, vocabulary, frozen encoder (on the CPU) and provenance."""

    config: ScGPTConfig
    vocab: GeneVocab
    model: ScGPTEncoder
    checkpoint_sha256: str
    files: CheckpointFiles
    ignored_keys: list[str] = field(default_factory=list)


def load_pretrained(model_dir: str | Path) -> PretrainedScGPT:
    """Load an official scGPT checkpoint folder for embedding.

    Parameters
    ----------
    model_dir
        Folder holding ``args.json``, ``vocab.json`` and ``best_model.pt``.

    Returns
    -------
    The loaded checkpoint; ``model`` is in eval mode on the CPU, gradients off.

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing.
    CheckpointError
        The weights cannot be read, or embedding-path tensors are missing or mis-shaped (all named).
    """
    files = CheckpointFiles.from_dir(model_dir)
    config = files.read_config()
    vocab = files.read_vocab(config)
    state, ignored = extract_embedding_state(load_state_dict(files.weights), config, len(vocab))
    model = ScGPTEncoder.from_state_dict(config, len(vocab), vocab.pad_id, state)
    return PretrainedScGPT(config, vocab, model, file_sha256(files.weights), files, ignored)
