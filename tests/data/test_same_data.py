"""The faster loaders give the same data as the previous pipeline where the configuration is unchanged.

The reference below is the pipeline as it was before the loaders were sped up, written out
step by step: PIL decodes every file at full size, labels are unpacked and packed at full
size, albumentations' ``Resize`` (which is ``cv2.resize``, bilinear for frames and nearest for
labels) brings both to ``image_size``, targets compare every instance with the whole map, and
frames are normalised with four tensor operations. With augmentation off, every tensor of
every clip must be bit-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hvps_lightning.data.datamodule import ClipCollate
from hvps_lightning.data.datasets import ClipDataset
from hvps_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, normalize_frames
from hvps_lightning.formats import decode_step, read_mots_txt, rgb_to_id, to_semantic_instance
from hvps_lightning.structures.masks import decode_mask
from hvps_lightning.structures.specs import DatasetSpec, label_lut


# ---------------------------------------------------------------------------- the reference
def reference_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image.convert("RGB"))


def reference_labels(ds: ClipDataset, sequence: int, target: int, shape: tuple[int, int]) -> np.ndarray:
    """The int32 panoptic map of a frame in the dataset's label spec, at full size."""
    seq, spec, source = ds.sequences[sequence], ds.spec, ds.source_spec
    frame = seq.frames[target]
    if not seq.labelled:
        return np.full(shape, spec.ignore_label * spec.label_divisor, np.int32)
    if source.layout == "mots":
        semantic, instance = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        for obj in read_mots_txt(seq.mots_txt):
            if obj.frame != frame.number:
                continue
            mask = decode_mask(obj.rle).astype(bool)
            semantic[mask] = obj.class_id
            if obj.class_id != 10:  # object k is instance k + 1: a fix (KITTI-MOTS' k = 0 was crowd)
                instance[mask] = obj.obj_id % 1000 + 1
    elif frame.coco is not None:
        ids = rgb_to_id(reference_image(frame.label))
        semantic, instance = to_semantic_instance(
            ids, frame.coco.segments, seq.class_of_category or {}, source.thing_ids, source.ignore_label
        )
    else:
        semantic, instance = decode_step(reference_image(frame.label))
    if spec.name != source.name:
        semantic = np.asarray(label_lut(source.name, spec.name))[np.clip(semantic, 0, 255)]
    semantic = semantic.astype(np.int32)
    instance = np.where(np.isin(semantic, spec.thing_ids), instance, 0).astype(np.int32)
    return semantic * np.int32(spec.label_divisor) + instance


def reference_targets(panoptic: np.ndarray, spec: DatasetSpec, base: int, labelled: bool) -> dict[str, Any]:
    pan = torch.from_numpy(panoptic.astype(np.int64))
    divisor = spec.label_divisor
    if not labelled:
        pan = torch.full_like(pan, spec.ignore_label * divisor)
    semantic = torch.div(pan, divisor, rounding_mode="floor")
    instance = pan - semantic * divisor
    is_thing = torch.isin(semantic, torch.tensor(spec.thing_ids)) & (instance > 0)
    ids = torch.unique(pan[is_thing]) if bool(is_thing.any()) else torch.zeros(0, dtype=torch.int64)
    masks = (pan.unsqueeze(0) == ids.view(-1, 1, 1)).to(torch.uint8)
    boxes = torch.zeros((len(ids), 4), dtype=torch.float32)
    for k, mask in enumerate(masks.bool()):
        rows, cols = torch.nonzero(mask.any(1))[:, 0], torch.nonzero(mask.any(0))[:, 0]
        boxes[k] = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    labels = torch.div(ids, divisor, rounding_mode="floor")
    return {"boxes": boxes, "labels": labels, "masks": masks, "track_ids": ids - labels * divisor,
            "identities": ids + base, "semantic": semantic, "panoptic": pan}  # fmt: skip


def reference_normalisation(frames: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return tensor.sub_(mean).div_(std)


def reference_clip(ds: ClipDataset, sequence: int, target: int) -> dict[str, Any]:
    seq = ds.sequences[sequence]
    frames = np.stack([reference_image(seq.frames[i].image) for i in ds.clip_indices(sequence, target)])
    shape = frames.shape[1:3]
    panoptic = reference_labels(ds, sequence, target, shape)
    size = ds.transform.image_size if ds.transform is not None else None
    if size is not None:
        frames = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_LINEAR) for f in frames])
        panoptic = cv2.resize(panoptic, size[::-1], interpolation=cv2.INTER_NEAREST)
    base = sequence * 256 * ds.spec.label_divisor
    return {
        "frames": reference_normalisation(frames),
        "target": reference_targets(panoptic, ds.spec, base, seq.labelled),
        "orig_size": shape,
        "input_size": frames.shape[1:3],
    }


def assert_same_clip(clip: dict[str, Any], reference: dict[str, Any]) -> None:
    """The clip, collated into a batch as the DataLoader does, holds the reference's tensors."""
    frames = ClipCollate()([[clip]])["frames"][0]
    assert frames.dtype == torch.float32 and torch.equal(frames, reference["frames"])
    assert clip["target"].keys() == reference["target"].keys()
    for key, expected in reference["target"].items():
        got = clip["target"][key]
        assert got.dtype == expected.dtype and torch.equal(got, expected), key
    assert clip["meta"]["orig_size"] == tuple(reference["orig_size"])
    assert clip["meta"]["input_size"] == tuple(reference["input_size"])


# ---------------------------------------------------------------------------- the comparisons
CASES = {
    "mot_step 48x80": ("motchallenge_step", "synth_mot_step_root", "val", None, (48, 80), 3),
    "mot_step 50x70": ("motchallenge_step", "synth_mot_step_root", "train", None, (50, 70), 2),
    "mot_step native": ("motchallenge_step", "synth_mot_step_root", "val", None, None, 2),
    "mot_step upscaled": ("motchallenge_step", "synth_mot_step_root", "val", None, (120, 200), 1),
    "kitti_step": ("kitti_step", "synth_kitti_step_root", "val", None, (40, 96), 3),
    "kitti_panoptic": ("kitti_panoptic", "synth_kitti_panoptic_root", "val", None, (48, 80), 1),
    "mots20 as mot_step": ("mots", "synth_mots20_root", "train", "motchallenge_step", (48, 80), 3),
    "kitti_mots as kitti_step": ("mots", "synth_kitti_mots_root", "val", "kitti_step", (64, 96), 2),
    "real kitti_step": ("kitti_step", "real_kitti_step_root", "train", None, (188, 621), 2),
    "real mots20 as mot_step": ("mots", "real_mots20_root", "train", "motchallenge_step", (240, 320), 2),
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.real_data) if c.startswith("real") else c for c in CASES]
)
def test_every_clip_equals_the_previous_pipeline(case: str, request: pytest.FixtureRequest) -> None:
    dataset, fixture, split, label_spec, size, clip_length = CASES[case]
    root = request.getfixturevalue(fixture)
    spec_name = label_spec or dataset
    transform = ClipTransform(size, train=False)
    ds = ClipDataset(
        dataset, root, split, label_spec=label_spec, clip_length=clip_length, transform=transform
    )
    assert ds.spec.name == spec_name
    checked = 0
    for index in range(len(ds)):
        name, target = ds.item_of(index)
        sequence = ds.sequence_names.index(name)
        (clip,) = ds[index]
        assert_same_clip(clip, reference_clip(ds, sequence, target))
        checked += int(clip["target"]["masks"].shape[0] > 0)
    assert checked > 0  # instances were compared, not only empty frames


def test_augmentation_off_in_training_gives_the_evaluation_data(synth_mot_step_root: Path) -> None:
    transform = ClipTransform((48, 80), train=True, hflip=False, color_jitter=0.0, scale_range=(1.0, 1.0))
    ds = ClipDataset("motchallenge_step", synth_mot_step_root, "train", clip_length=3, transform=transform)
    for index in (0, 4, 9):
        assert_same_clip(ds[index][0], reference_clip(ds, 0, ds.item_of(index)[1]))


def test_the_normalisation_table_is_the_tensor_formula_on_every_level() -> None:
    levels = np.tile(np.arange(256, dtype=np.uint8), (3, 1)).T.reshape(1, 16, 16, 3)
    assert torch.equal(normalize_frames(levels), reference_normalisation(levels))
