"""log_stq: keys, sync_dist=False / rank_zero_only, and use from a real Lightning validation loop."""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from hvps_lightning.lightning.metric_logging import log_stq, stq_log_dict
from hvps_lightning.metrics import STQ

RESULTS = {
    "stq": 0.6,
    "aq": 0.4,
    "sq": 0.9,
    "iou_per_class": {"road": 0.8, "person": 1.0, "rider": math.nan},
    "per_sequence": {"0002": {"stq": 0.6, "aq": 0.4, "sq": 0.9}},
    "num_frames": 4,
}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def log(self, name: str, value: Any, **kwargs: Any) -> None:
        self.calls.append((name, value, kwargs))


def test_log_dict_keys() -> None:
    assert stq_log_dict(RESULTS, "val") == {
        "val/stq": 0.6, "val/aq": 0.4, "val/sq": 0.9, "val/iou/road": 0.8, "val/iou/person": 1.0,
    }  # fmt: skip
    keys = stq_log_dict(RESULTS, "test/", per_class=False, per_sequence=True)
    assert sorted(keys) == sorted(
        ["test/stq", "test/aq", "test/sq", "test/seq/0002/stq", "test/seq/0002/aq", "test/seq/0002/sq"]
    )
    assert "stq" in stq_log_dict(RESULTS, "")


@pytest.mark.parametrize("rank_zero_only", [False, True])
def test_log_stq_never_syncs(rank_zero_only: bool) -> None:
    recorder = Recorder()
    logged = log_stq(recorder, RESULTS, "val", rank_zero_only=rank_zero_only)
    assert [c[0] for c in recorder.calls] == list(logged)
    for name, _, kwargs in recorder.calls:
        assert kwargs["sync_dist"] is False
        assert kwargs["rank_zero_only"] is rank_zero_only
        assert kwargs["on_epoch"] is True and kwargs["on_step"] is False
        assert kwargs["prog_bar"] is (name == "val/stq")


class TinySegmenter(L.LightningModule):
    """Predicts the target shifted by one pixel; logs STQ at the end of validation."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.stq = STQ(2, [1], 255, class_names=["road", "person"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        target = batch["target"]
        preds = torch.roll(target, shifts=1, dims=2)
        self.stq.update(preds, target, batch["sequence"])

    def on_validation_epoch_end(self) -> None:
        log_stq(self, self.stq.compute(), "val")
        self.stq.reset()


def batches() -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    items = []
    for sequence in ("a", "b"):
        semantic = torch.randint(0, 2, (1, 6, 8), generator=generator)
        instance = torch.where(semantic == 1, torch.randint(1, 3, (1, 6, 8), generator=generator), 0)
        items.append({"target": torch.stack([semantic, instance], -1), "sequence": [sequence]})
    return items


def test_logged_from_a_validation_loop_and_monitorable() -> None:
    model = TinySegmenter()
    loader = DataLoader(batches(), batch_size=None)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints about workers on a tiny loader
        (metrics,) = trainer.validate(model, loader, verbose=False)
    expected = STQ(2, [1], 255)
    for item in batches():
        expected.update(torch.roll(item["target"], 1, 2), item["target"], item["sequence"])
    values = expected.compute()
    assert metrics["val/stq"] == pytest.approx(values["stq"], abs=1e-6)
    assert metrics["val/aq"] == pytest.approx(values["aq"], abs=1e-6)
    assert "val/iou/person" in trainer.callback_metrics
    assert 0.0 < metrics["val/stq"] < 1.0
