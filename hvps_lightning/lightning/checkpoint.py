"""Checkpointing that gives every run its own folder and still resumes with ``--ckpt_path last``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


def make_run_dir(root: str | Path, prefix: str = "") -> Path:
    """Create and return a new, unique folder ``root/<prefix><YYYYmmdd-HHMMSS>[-k]``.

    Two runs started in the same second get different folders (``mkdir`` is atomic).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = prefix + time.strftime("%Y%m%d-%H%M%S")
    k = 0
    while True:
        candidate = root / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing into a fresh run folder under ``root``.

    ``--ckpt_path last`` resumes from the newest ``last.ckpt`` of any run under ``root``, so a
    killed ``hvps fit`` continues with the same command plus ``--ckpt_path last``; the resumed
    run writes into a new folder and never over the one it resumed from.

    Args:
        root: folder holding one sub-folder per run (default: ``<trainer.default_root_dir>/checkpoints``).
        **kwargs: ``ModelCheckpoint`` arguments (``monitor``, ``mode``, ``save_last``,
            ``every_n_train_steps``...); ``dirpath`` is chosen per run.
    """

    def __init__(self, root: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("dirpath", None)
        super().__init__(dirpath=None, **kwargs)
        self._root = Path(root) if root else None

    @property
    def root(self) -> Path:
        """The folder holding the run folders."""
        if self._root is not None:
            return self._root
        trainer = getattr(self, "_trainer_ref", None)
        return Path(trainer.default_root_dir if trainer is not None else ".") / "checkpoints"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Pick the run folder on rank 0 (the parent class broadcasts it) before Lightning resolves it."""
        self._trainer_ref = trainer
        if self.dirpath is None and stage == "fit":
            self.dirpath = str(make_run_dir(self.root)) if trainer.is_global_zero else str(self.root / "rank")
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        """All ``last*.ckpt`` files of every run under ``root`` (Lightning resumes the newest)."""
        self._trainer_ref = trainer
        if not self.root.is_dir():
            return set()
        pattern = f"*/{self.CHECKPOINT_NAME_LAST}*{self.FILE_EXTENSION}"
        return {os.path.normpath(p) for p in self.root.glob(pattern)}
