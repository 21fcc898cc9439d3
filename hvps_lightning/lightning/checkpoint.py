"""Checkpointing: a folder per run, ``--ckpt_path last`` of the same config, the final weights always saved.

The policy (``RunCheckpoint``):

* **One folder per run**: ``<root>/<YYYYmmdd-HHMMSS>[-k]/`` (``root`` defaults to
  ``<trainer.default_root_dir>/checkpoints``); a resumed run writes into a new folder and never
  over the one it resumed from. Beside the checkpoints, ``run.json`` records the run: its
  config fingerprint (below), what the fingerprint covers, the W&B run it logged to (id,
  project, mode; ``hvps fit --ckpt_path ...`` resumes that W&B run) and the checkpoint it
  resumed from.
* **``--ckpt_path last``** resolves to the newest ``last.ckpt`` of a run **of the same
  config**: the same fingerprint, a hash of the task class, the network's configuration, the
  dataset, the start weights (``pretrained``/``init_checkpoint``/``init_from``), the
  DataModule's settings (except worker counts), the seed and the smoke settings (below). The
  optimiser, the schedule and the training length may change between a run and its resume
  (continuing with more steps is what a resume is for). Runs of other configs, and folders
  written before ``run.json`` existed, are skipped, and the log says so; the run says which
  file (and global step) it resumed from.
* **Smoke runs never poison a resume**: ``fast_dev_run`` writes no checkpoint at all, and a
  run with ``limit_train_batches``/``limit_val_batches``/``overfit_batches`` set has those in
  its fingerprint, so a real run's ``last`` never picks its checkpoints (nor the other way round).
* **The final weights are always saved**: at the end of training ``last.ckpt`` is written
  again unless it already holds the last step, so a stage that stops mid-epoch (``max_steps``)
  hands its final weights to the next stage's ``init_from`` (which logs the step it loads).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from hvps_lightning.formats.detection_cache import json_safe
from hvps_lightning.io import write_json

#: the run record beside the checkpoints
RUN_FILE = "run.json"
#: DataModule settings that change how fast data loads, not what is trained
RUNTIME_DATA_KEYS = frozenset({"num_workers", "pin_memory", "persistent_workers", "prefetch_factor"})
#: trainer settings that make a run a smoke run, with their defaults
SMOKE_SETTINGS = {"fast_dev_run": False, "limit_train_batches": 1.0, "limit_val_batches": 1.0,
                  "overfit_batches": 0.0}  # fmt: skip


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


def smoke_settings(trainer: L.Trainer) -> dict[str, Any]:
    """The smoke settings of ``trainer`` that differ from a full run (empty for a full run).

    A batch limit given as a number of batches (an int, even 1) is a smoke setting; as a
    fraction it is one below 1.0 (Lightning reads ``1`` as one batch and ``1.0`` as all).
    """
    found: dict[str, Any] = {}
    for name, default in SMOKE_SETTINGS.items():
        value = getattr(trainer, name, default)
        if name == "fast_dev_run":
            smoke = bool(value)
        elif name.startswith("limit_"):
            smoke = value is not None and (isinstance(value, int) or float(value) < 1.0)
        else:
            smoke = value is not None and float(value) > 0
        if smoke:
            found[name] = value
    return found


def run_identity(
    trainer: L.Trainer, pl_module: L.LightningModule, datamodule: L.LightningDataModule | None = None
) -> dict[str, Any]:
    """What makes two runs "the same config" for ``--ckpt_path last`` (see the module docstring).

    ``datamodule`` defaults to the trainer's (attached once ``fit`` starts).
    """
    hparams = dict(getattr(pl_module, "hparams_initial", None) or getattr(pl_module, "hparams", {}) or {})
    datamodule = datamodule if datamodule is not None else getattr(trainer, "datamodule", None)
    data = dict(getattr(datamodule, "hparams", {}) or {}) if datamodule is not None else {}
    cls = type(pl_module)
    return json_safe({
        "task": f"{cls.__module__}.{cls.__qualname__}",
        "net": hparams.get("net"),
        "dataset": hparams.get("dataset"),
        "start_weights": {k: hparams.get(k) for k in ("pretrained", "init_checkpoint", "init_from")},
        "data": {k: v for k, v in sorted(data.items()) if k not in RUNTIME_DATA_KEYS},
        "seed": os.environ.get("PL_GLOBAL_SEED"),
        "smoke": smoke_settings(trainer),
    })  # fmt: skip


def fingerprint(identity: dict[str, Any]) -> str:
    """A short hash of :func:`run_identity`."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_run_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run folder, or ``None`` (absent or unreadable)."""
    try:
        record = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def checkpoint_step(path: str | Path) -> tuple[int | None, int | None]:
    """``(global_step, epoch)`` stored in a checkpoint file (read lazily), ``(None, None)`` if unreadable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # reported by whoever loads it for real
        return None, None
    return ckpt.get("global_step"), ckpt.get("epoch")


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with the run-folder policy of the module docstring.

    Args:
        root: folder holding one sub-folder per run (default: ``<trainer.default_root_dir>/checkpoints``).
        **kwargs: ``ModelCheckpoint`` arguments (``monitor``, ``mode``, ``save_last``,
            ``every_n_train_steps``...); ``dirpath`` is chosen per run.
    """

    def __init__(self, root: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("dirpath", None)
        super().__init__(dirpath=None, **kwargs)
        self._root = Path(root) if root else None
        self._trainer_ref: L.Trainer | None = None

    @property
    def root(self) -> Path:
        """The folder holding the run folders."""
        if self._root is not None:
            return self._root
        trainer = self._trainer_ref
        return Path(trainer.default_root_dir if trainer is not None else ".") / "checkpoints"

    # ----------------------------------------------------------------------- the run folder
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Pick the run folder on rank 0 (the parent class broadcasts it) and write ``run.json``."""
        self._trainer_ref = trainer
        if self.dirpath is None and stage == "fit":
            if trainer.fast_dev_run:
                # Lightning saves nothing in a fast_dev_run; no folder either
                self.dirpath = str(self.root / "fast_dev_run")
            elif trainer.is_global_zero:
                self.dirpath = str(make_run_dir(self.root))
            else:
                self.dirpath = str(self.root / "rank")
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and not trainer.fast_dev_run and trainer.is_global_zero:
            self.write_run_record(trainer, pl_module)

    def write_run_record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        """Write ``run.json`` into this run's folder; return its path."""
        identity = run_identity(trainer, pl_module)
        record = {
            "fingerprint": fingerprint(identity),
            "identity": identity,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "resumed_from": None,  # set when Lightning restores the checkpoint (on_load_checkpoint)
            "wandb": wandb_run_info(trainer),
        }
        path = Path(str(self.dirpath)) / RUN_FILE
        write_json(path, record)
        return path

    # ----------------------------------------------------------------------- --ckpt_path last
    def last_checkpoints(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        datamodule: L.LightningDataModule | None = None,
    ) -> tuple[list[Path], int]:
        """The ``last*.ckpt`` of runs of this config under ``root`` (newest last), and how many others."""
        self._trainer_ref = trainer
        if not self.root.is_dir():
            return [], 0
        wanted = fingerprint(run_identity(trainer, pl_module, datamodule))
        same, skipped = [], 0
        for path in self.root.glob(f"*/{self.CHECKPOINT_NAME_LAST}*{self.FILE_EXTENSION}"):
            record = read_run_record(path.parent)
            if record is not None and record.get("fingerprint") == wanted:
                same.append(path)
            else:
                skipped += 1
        return sorted(same, key=lambda p: p.stat().st_mtime), skipped

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        """The ``last`` checkpoints of runs of this config (Lightning resumes the newest)."""
        self._trainer_ref = trainer
        same, skipped = self.last_checkpoints(trainer, trainer.lightning_module)
        if skipped:
            message = (
                f"--ckpt_path last: skipped {skipped} last checkpoint(s) under {self.root} of other configs "
                "(another network, data, seed or start weights, smoke runs, or runs without run.json)"
            )
            rank_zero_info(message) if same else rank_zero_warn(message + "; none is of this config")
        return {os.path.normpath(p) for p in same}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Say which file the run resumes from, and at which step (also into ``run.json``)."""
        rank_zero_info(
            f"resuming from {trainer.ckpt_path} (global step {checkpoint.get('global_step')}, "
            f"epoch {checkpoint.get('epoch')})"
        )
        record = read_run_record(str(self.dirpath)) if self.dirpath and trainer.is_global_zero else None
        if record is not None:
            record["resumed_from"] = str(trainer.ckpt_path)
            record["resumed_from_step"] = checkpoint.get("global_step")
            write_json(Path(str(self.dirpath)) / RUN_FILE, record)

    # ----------------------------------------------------------------------- the final weights
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save ``last.ckpt`` with the final weights unless it holds them already (not in a fast_dev_run)."""
        if not self.save_last or trainer.fast_dev_run:
            return
        if self._last_checkpoint_saved and self._last_global_step_saved == trainer.global_step:
            return
        # _save_last_checkpoint overwrites last.ckpt (its name does not change between steps)
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = trainer.global_step
        rank_zero_info(f"final weights (global step {trainer.global_step}) saved to {self.last_model_path}")


def wandb_run_info(trainer: L.Trainer) -> dict[str, Any] | None:
    """Id, name, project, entity and mode of the trainer's W&B run, if it has one that is not disabled."""
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        run = logger.experiment
        mode = getattr(getattr(run, "settings", None), "mode", None)
        mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)  # Lightning sets WANDB_MODE=dryrun
        if not getattr(run, "id", None) or mode == "disabled":
            return None
        return {"id": run.id, "name": getattr(run, "name", None), "project": getattr(run, "project", None),
                "entity": getattr(run, "entity", None), "mode": mode}  # fmt: skip
    return None
