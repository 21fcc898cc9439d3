"""Fixtures of the inference tests: real (briefly trained) checkpoints of tiny networks, a bundle, frames.

The checkpoints are what ``hvps fit`` writes: a ``MOTSModule`` and a ``SemanticModule`` trained
for one step by a Lightning ``Trainer`` on the generated MOTChallenge-STEP root, with the
DataModule's hyperparameters, saved by ``trainer.save_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from inference_helpers import LOOSE_TRACKER, train_checkpoint


@pytest.fixture(scope="session")
def checkpoints(synth_mot_step_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"mots": ..., "semantic": ...}``: checkpoints of tiny networks, one training step each."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {role: train_checkpoint(role, synth_mot_step_root, folder / f"{role}.ckpt")
            for role in ("mots", "semantic")}  # fmt: skip


@pytest.fixture(scope="session")
def bundle(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the two checkpoints, with a tracker loose enough to track their weak detections."""
    from hvps_lightning.inference import InferenceModel

    model = InferenceModel.from_checkpoints(checkpoints["mots"], checkpoints["semantic"], LOOSE_TRACKER)
    return model.save(tmp_path_factory.mktemp("bundle") / "model.hvps")


@pytest.fixture(scope="session")
def val_frames(synth_mot_step_root: Path) -> Path:
    """The generated validation sequence's frames: a plain folder of 10 PNGs, 96x160."""
    return synth_mot_step_root / "images" / "train" / "0002"
