"""HVPSDataModule: one batch per stage (the docs/ARCHITECTURE.md contract), ordering, workers, config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from jsonargparse import ArgumentParser

from hvps_lightning.data.datamodule import ClipCollate, ContiguousDistributedSampler, HVPSDataModule
from hvps_lightning.errors import HVPSError

STAGES = {
    # stage: (root fixture, dataset name, thing ids, number of classes)
    "kitti_panoptic": ("synth_kitti_panoptic_root", "kitti_panoptic", {11, 12, 13, 14, 15, 16, 17, 18}, 19),
    "kitti_step": ("synth_kitti_step_root", "kitti_step", {11, 13}, 19),
    "mot_step": ("synth_mot_step_root", "motchallenge_step", {4}, 7),
}
META_KEYS = {"sequence", "frame", "frame_index", "orig_size", "input_size", "image_path", "group"}
TARGET_DTYPES = {
    "boxes": torch.float32,
    "labels": torch.int64,
    "masks": torch.uint8,
    "track_ids": torch.int64,
    "identities": torch.int64,
    "semantic": torch.int64,
    "panoptic": torch.int64,
}


def check_batch(batch: dict[str, Any], size: int, length: int, things: set[int], classes: int) -> None:
    assert set(batch) == {"frames", "target_index", "targets", "meta"}
    frames = batch["frames"]
    assert frames.dtype == torch.float32 and frames.shape[1:] == (length, 3, 48, 80)
    assert frames.shape[0] == size == len(batch["targets"]) == len(batch["meta"])
    assert isinstance(batch["target_index"], int)
    assert -3 < float(frames.mean()) < 3  # normalised, not 0..255
    for target, meta in zip(batch["targets"], batch["meta"], strict=True):
        assert set(target) == set(TARGET_DTYPES)
        for key, dtype in TARGET_DTYPES.items():
            assert target[key].dtype == dtype, key
        n = target["labels"].shape[0]
        assert target["boxes"].shape == (n, 4) and target["masks"].shape == (n, 48, 80)
        assert target["track_ids"].shape == target["identities"].shape == (n,)
        assert target["semantic"].shape == target["panoptic"].shape == (48, 80)
        assert set(target["labels"].tolist()) <= things
        valid = target["semantic"] != 255
        assert int(target["semantic"][valid].max()) < classes
        assert torch.equal(target["panoptic"] // 1000, target["semantic"])
        assert set(meta) == META_KEYS
        assert isinstance(meta["sequence"], str) and isinstance(meta["frame"], str)
        assert Path(meta["image_path"]).is_file() and meta["orig_size"] == (96, 160)


@pytest.mark.parametrize("stage", list(STAGES))
def test_one_batch_per_stage(stage: str, request: pytest.FixtureRequest) -> None:
    fixture, dataset_name, things, classes = STAGES[stage]
    root = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    dm = HVPSDataModule(finetune_stage=stage, root=str(root), batch_size=2, image_size=(48, 80))  # type: ignore[arg-type]
    assert dm.dataset_name == dataset_name == dm.spec.name
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    check_batch(train, 4, 3, things, classes)  # 2 items x 2 clips
    assert train["target_index"] == 2
    assert [m["group"] for m in train["meta"]] == [0, 0, 1, 1]
    for first, second in (train["meta"][0:2], train["meta"][2:4]):
        assert first["sequence"] == second["sequence"]
    assert sum(t["labels"].numel() for t in train["targets"]) > 0
    val = next(iter(dm.val_dataloader()))
    check_batch(val, 2, 3, things, classes)
    assert [m["group"] for m in val["meta"]] == [0, 1]


def test_validation_iterates_each_sequence_in_order(synth_kitti_step_root: Path) -> None:
    dm = HVPSDataModule(
        finetune_stage="kitti_step",
        root=str(synth_kitti_step_root),
        batch_size=3,
        val_split="train",
        clip_mode="centred",
    )
    dm.setup("validate")
    metas = [m for batch in dm.val_dataloader() for m in batch["meta"]]
    assert [(m["sequence"], m["frame_index"]) for m in metas] == [("0000", i) for i in range(10)]
    assert dm.target_index == 1
    assert next(iter(dm.val_dataloader()))["target_index"] == 1


def test_moving_to_the_next_stage_is_one_change(
    synth_kitti_step_root: Path, synth_mot_step_root: Path
) -> None:
    parser = ArgumentParser()
    parser.add_class_arguments(HVPSDataModule, "data")
    base = {"batch_size": 1, "image_size": [48, 80], "clip_length": 2}
    configs = {
        "kitti_step": {"finetune_stage": "kitti_step", "root": str(synth_kitti_step_root)},
        "mot_step": {"finetune_stage": "mot_step", "root": str(synth_mot_step_root)},
    }
    for stage, change in configs.items():
        cfg = parser.parse_object({"data": {**base, **change}})
        dm = parser.instantiate(cfg).data
        assert isinstance(dm, HVPSDataModule) and dm.finetune_stage == stage
        assert dm.image_size == (48, 80)
        dm.setup("validate")
        assert next(iter(dm.val_dataloader()))["frames"].shape == (1, 2, 3, 48, 80)


def test_unknown_config_keys_are_errors() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(HVPSDataModule, "data")
    with pytest.raises(Exception, match="imag_size"):
        parser.parse_object({"data": {"finetune_stage": "mot_step", "imag_size": [48, 80]}})
    with pytest.raises(Exception, match="finetune_stage"):
        parser.parse_object({"data": {"finetune_stage": "mots_step"}})
    # `stage` is Lightning's word (setup(stage)); the finetuning stage is `finetune_stage` only
    with pytest.raises(Exception, match="stage"):
        parser.parse_object({"data": {"stage": "mot_step"}})


def test_default_root_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dm = HVPSDataModule(finetune_stage="kitti_step")
    assert dm.root == Path("data/kitti_step")
    with pytest.raises(
        HVPSError, match=r"data/kitti_step: dataset root not found; generate one with `hvps synth"
    ):
        dm.setup("fit")
    assert HVPSDataModule(finetune_stage="mot_step", dataset="mots").root == Path("data/mots")
    with pytest.raises(HVPSError, match="no class map from 'motchallenge_step' to 'kitti_panoptic'"):
        HVPSDataModule(finetune_stage="kitti_panoptic", dataset="motchallenge_step")
    with pytest.raises(HVPSError, match="sequences: unknown keys"):
        HVPSDataModule(sequences={"training": ["0000"]})
    with pytest.raises(HVPSError, match="batch_size"):
        HVPSDataModule(batch_size=0)


def test_no_validation_split(synth_mot_step_root: Path) -> None:
    dm = HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), val_split=None)
    dm.setup("fit")
    assert dm.val_dataloader() == []


def test_predict_on_an_unlabelled_split(synth_mot_step_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "mot"
    shutil.copytree(synth_mot_step_root, root)
    shutil.copytree(root / "images/train/0002", root / "images/test/0001")
    dm = HVPSDataModule(
        finetune_stage="mot_step", root=str(root), predict_split="test", batch_size=4, max_frames=4
    )
    dm.setup("predict")
    (batch,) = list(dm.predict_dataloader())
    assert [m["sequence"] for m in batch["meta"]] == ["0001"] * 4
    assert all(t["masks"].shape[0] == 0 and (t["semantic"] == 255).all() for t in batch["targets"])


def test_two_workers(synth_mot_step_root: Path) -> None:
    def first_batches() -> list[dict[str, Any]]:
        torch.manual_seed(0)
        dm = HVPSDataModule(
            finetune_stage="mot_step", root=str(synth_mot_step_root), num_workers=2, image_size=(48, 80)
        )
        dm.setup("fit")
        iterator = iter(dm.train_dataloader())
        return [next(iterator), next(iterator)]

    a, b = first_batches(), first_batches()
    for x, y in zip(a, b, strict=True):
        check_batch(x, 4, 3, {4}, 7)
        assert torch.equal(x["frames"], y["frames"])  # seeded: reproducible across runs with workers
    assert not torch.equal(a[0]["frames"], a[1]["frames"])


def test_collate_pads_clips_of_different_sizes() -> None:
    def clip(height: int, width: int) -> dict[str, Any]:
        return {
            "frames": torch.full((2, height, width, 3), 200, dtype=torch.uint8),
            "target": {
                "boxes": torch.zeros(1, 4),
                "labels": torch.tensor([4]),
                "masks": torch.ones(1, height, width, dtype=torch.uint8),
                "track_ids": torch.tensor([1]),
                "identities": torch.tensor([4001]),
                "semantic": torch.full((height, width), 4),
                "panoptic": torch.full((height, width), 4001),
            },
            "meta": {
                "sequence": "s",
                "frame": "0",
                "frame_index": 0,
                "orig_size": (height, width),
                "image_path": "",
            },
            "target_index": 1,
        }

    batch = ClipCollate(255, 1000)([[clip(4, 6)], [clip(5, 3)]])
    assert batch["frames"].shape == (2, 2, 3, 5, 6)
    assert batch["frames"][0, :, :, 4].abs().sum() == 0 and batch["frames"][1, :, :, :, 3:].abs().sum() == 0
    assert (batch["frames"][0, :, :, :4, :6] > 1).all()  # the clip's own pixels, normalised
    small = batch["targets"][0]
    assert small["semantic"].shape == (5, 6) and (small["semantic"][4] == 255).all()
    assert (small["panoptic"][4] == 255000).all() and small["masks"][:, 4].sum() == 0
    assert batch["meta"][1]["orig_size"] == (5, 3) and batch["target_index"] == 1


class _TinyModel(L.LightningModule):
    """Consumes batches like the real models: frames, targets and meta."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv2d(3, 1, 1)
        self.seen: list[tuple[str, int]] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        assert batch["frames"].dtype == torch.float32 and batch["frames"].shape[2:] == (3, 48, 80)
        target_frames = batch["frames"][:, batch["target_index"]]
        loss = self.layer(target_frames).mean() + sum(t["masks"].float().mean() for t in batch["targets"]) * 0
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.seen += [(m["sequence"], m["frame_index"]) for m in batch["meta"]]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("on_device", [False, True])
def test_lightning_trainer_runs_on_the_datamodule(
    synth_mot_step_root: Path, tmp_path: Path, on_device: bool
) -> None:
    dm = HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), image_size=(48, 80),
                        batch_size=2, normalize_on_device=on_device)  # fmt: skip
    model = _TinyModel()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=5,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert model.seen == [("0002", i) for i in range(10)]


@pytest.mark.parametrize(("size", "ranks"), [(10, 2), (10, 3), (7, 4), (1, 2)])
def test_contiguous_sampler_keeps_order_on_every_rank(size: int, ranks: int) -> None:
    dataset = list(range(size))
    blocks = [list(ContiguousDistributedSampler(dataset, ranks, rank)) for rank in range(ranks)]  # type: ignore[arg-type]
    assert len({len(block) for block in blocks}) == 1  # every rank runs the same number of steps
    assert [i for block in blocks for i in block][:size] == dataset
    for block in blocks:
        assert block == sorted(block)


def test_evaluation_loaders_shard_contiguously_under_ddp(synth_mot_step_root: Path) -> None:
    from types import SimpleNamespace

    dm = HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), batch_size=2)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)  # type: ignore[assignment]
    dm.setup("validate")
    loader = dm.val_dataloader()
    assert isinstance(loader.sampler, ContiguousDistributedSampler)
    assert [m["frame_index"] for batch in loader for m in batch["meta"]] == [5, 6, 7, 8, 9]
    assert not isinstance(dm.train_dataloader().sampler, ContiguousDistributedSampler)


def test_semantic_targets_hold_the_same_semantic_map_and_nothing_else(synth_mot_step_root: Path) -> None:
    options: dict[str, Any] = {"finetune_stage": "mot_step", "root": str(synth_mot_step_root),
                               "image_size": (48, 80), "batch_size": 2, "clip_length": 1,
                               "clips_per_item": 1}  # fmt: skip
    full, semantic = HVPSDataModule(**options), HVPSDataModule(**options, targets="semantic")
    for dm in (full, semantic):
        dm.setup("fit")
    for index in range(6):  # augmentation on: both draw the same scale, crop, flip and colours
        torch.manual_seed(index)
        (a,) = full.dataset("train")[index]
        torch.manual_seed(index)
        (b,) = semantic.dataset("train")[index]
        assert set(b["target"]) == {"semantic"} and b["target"]["semantic"].dtype == torch.int64
        assert torch.equal(a["target"]["semantic"], b["target"]["semantic"])
        assert torch.equal(a["frames"], b["frames"]) and a["meta"] == b["meta"]
    batch = next(iter(semantic.train_dataloader()))
    assert [set(t) for t in batch["targets"]] == [{"semantic"}, {"semantic"}]
    padded = ClipCollate(255, 1000)._pad_target({"semantic": torch.zeros(2, 3, dtype=torch.int64)}, 3, 4)
    assert set(padded) == {"semantic"} and padded["semantic"][:, 3].tolist() == [255, 255, 255]
    with pytest.raises(HVPSError, match="targets must be 'all' or 'semantic'"):
        HVPSDataModule(targets="boxes")  # type: ignore[arg-type]


def test_normalising_on_the_device_gives_the_same_batches(synth_kitti_step_root: Path) -> None:
    options: dict[str, Any] = {"finetune_stage": "kitti_step", "root": str(synth_kitti_step_root),
                               "image_size": (48, 80), "batch_size": 3, "clip_length": 2}  # fmt: skip
    host, device = HVPSDataModule(**options), HVPSDataModule(**options, normalize_on_device=True)
    for dm in (host, device):
        dm.setup("validate")
    for a, b in zip(host.val_dataloader(), device.val_dataloader(), strict=True):
        assert b["frames"].dtype == torch.uint8 and b["frames"].shape[1:] == (2, 48, 80, 3)
        b = device.on_after_batch_transfer(b, 0)
        assert torch.equal(a["frames"], b["frames"])
    # clips of different sizes: the padding is 0 after normalisation too
    dataset = device.dataset("val")
    small = {**dataset[3][0], "frames": dataset[3][0]["frames"][:, :40, :70]}
    small["meta"] = {**small["meta"], "input_size": (40, 70)}
    items = [dataset[0], [small]]
    expected = ClipCollate(255, 1000)(items)
    got = ClipCollate(255, 1000, normalize=False)(items)
    assert torch.equal(device.on_after_batch_transfer(got, 0)["frames"], expected["frames"])


# ---------------------------------------------------------------------------- several sources, footage
def test_training_on_mots20_next_to_step_and_the_footage_refusal(
    synth_mot_step_root: Path, synth_mots20_root: Path
) -> None:
    """MOTS20 sequences join MOTChallenge-STEP 0009 in training; MOTS20-02 is STEP 0002's footage."""

    def module(mots20: list[str], **kwargs: Any) -> HVPSDataModule:
        sources = [{"dataset": "motchallenge_step", "root": str(synth_mot_step_root), "sequences": ["0009"]},
                   {"dataset": "mots", "root": str(synth_mots20_root), "sequences": mots20}]  # fmt: skip
        return HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), batch_size=2,
                              image_size=(48, 80), train_sources=sources, **kwargs)  # fmt: skip

    dm = module(["MOTS20-09"])
    dm.setup("fit")
    step, mots20 = dm.clip_datasets("train")
    assert len(dm.dataset("train")) == len(step) + len(mots20) == 20
    assert [s.name for s in dm.clip_datasets("val")[0].sequences] == ["0002"]
    # the same people (MOTS20-09 is STEP 0009) under two identity ranges: never one identity
    a, b = step[0][0], mots20[0][0]
    ids_a, ids_b = set(a["target"]["identities"].tolist()), set(b["target"]["identities"].tolist())
    assert ids_a and ids_b and max(ids_a) < 256 * 1000 <= min(ids_b)  # the second source's range
    assert len(a["target"]["track_ids"]) == len(b["target"]["track_ids"])  # the same people
    # MOTS20-02 in training while validating on STEP 0002: refused, one line
    with pytest.raises(HVPSError) as caught:
        module(["MOTS20-09", "MOTS20-02"]).setup("fit")
    message = str(caught.value)
    assert message.startswith(f"data: training sequence MOTS20-02 (mots, {synth_mots20_root}) is the same "
                              f"footage (MOT17-02) as validation sequence 0002 (motchallenge_step, "
                              f"{synth_mot_step_root})")  # fmt: skip
    assert message.endswith("--data.init_args.allow_shared_footage true") and "\n" not in message
    shared = module(["MOTS20-09", "MOTS20-02"], allow_shared_footage=True)
    shared.setup("fit")
    assert len(shared.dataset("train")) == 30


def test_one_root_sharing_a_sequence_between_training_and_validation_is_refused(
    synth_mot_step_root: Path,
) -> None:
    dm = HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), val_split="train",
                        sequences={"train": ["0009", "0002"], "val": ["0002"]})  # fmt: skip
    with pytest.raises(HVPSError, match=r"training sequence 0002 .* is the same footage \(MOT17-02\)"):
        dm.setup("fit")
    # the submission setup: both sequences in training, no validation
    final = HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), val_split=None,
                           sequences={"train": ["0002", "0009"]})  # fmt: skip
    final.setup("fit")
    assert len(final.dataset("train")) == 20


def test_train_sources_are_checked_when_configured() -> None:
    with pytest.raises(HVPSError, match="unknown dataset 'nope'"):
        HVPSDataModule(finetune_stage="mot_step", train_sources=[{"dataset": "nope", "root": "x"}])
    with pytest.raises(HVPSError, match="no class map from 'motchallenge_step' to 'kitti_step'"):
        HVPSDataModule(finetune_stage="kitti_step",
                       train_sources=[{"dataset": "motchallenge_step", "root": "x"}])  # fmt: skip
