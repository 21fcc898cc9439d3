"""Clip-consistent augmentation: one draw for every frame and the labels; targets from the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, binary_erosion

from hvps_lightning.data.loaders import read_image
from hvps_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    denormalize_frames,
    masks_to_boxes_xyxy,
    normalize_frames,
    panoptic_targets,
    to_panoptic,
)
from hvps_lightning.formats import read_step_png
from hvps_lightning.structures.specs import get_spec

MOT = get_spec("motchallenge_step")
IGNORE = MOT.ignore_label * MOT.label_divisor
MAGENTA = np.array([255, 0, 255], np.uint8)


def train_transform(**kwargs: object) -> ClipTransform:
    options = {"image_size": (64, 96), "train": True, "scale_range": (0.6, 1.6), "ignore_value": IGNORE}
    options.update(kwargs)
    return ClipTransform(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def frame(synth_mot_step_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A generated frame whose person pixels are painted magenta, and its panoptic map."""
    image = read_image(synth_mot_step_root / "images/train/0002/000005.png").copy()
    semantic, instance = read_step_png(synth_mot_step_root / "panoptic_maps/train/0002/000005.png")
    panoptic = to_panoptic(semantic, instance, MOT)
    people = (semantic == 4) & (instance > 0)
    assert people.sum() > 200
    image[people] = MAGENTA
    image[~people & (image[..., 0] > 200) & (image[..., 2] > 200) & (image[..., 1] < 80)] = (0, 128, 0)
    return image, panoptic


def test_identical_frames_stay_identical(frame: tuple[np.ndarray, np.ndarray]) -> None:
    image, panoptic = frame
    clip = np.stack([image, image, image])
    transform = train_transform(color_jitter=0.4)
    outputs = set()
    for seed in range(8):
        frames, _ = transform(clip, panoptic, seed)
        assert frames.shape == (3, 64, 96, 3) and frames.dtype == np.uint8
        assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[1], frames[2])
        outputs.add(frames[0].tobytes())
    assert len(outputs) == 8  # every seed draws another augmentation


@pytest.mark.parametrize("image_size", [(96, 160), None])
def test_masks_stay_on_the_person_pixels(
    image_size: tuple[int, int] | None, frame: tuple[np.ndarray, np.ndarray]
) -> None:
    # None: scale and crop at the native size (96x160), as with a given size
    image, panoptic = frame
    clip = np.stack([image, image])
    transform = train_transform(image_size=image_size, scale_range=(0.8, 1.25), color_jitter=0.0)
    reference, _ = ClipTransform(image_size, ignore_value=IGNORE)(clip, panoptic)
    augmented = 0
    for seed in range(10):
        frames, pan = transform(clip, panoptic, seed)
        union = panoptic_targets(pan, MOT)["masks"].sum(0).numpy() > 0
        # Linear (image) and nearest (mask) resampling differ on the boundary only: compare the
        # mask's interior with the magenta pixels, and the far outside with the rest.
        inner, outer = binary_erosion(union), ~binary_dilation(union)
        assert inner.sum() > 30
        magenta = np.all(np.abs(frames[-1].astype(int) - MAGENTA) < 60, axis=-1)
        assert magenta[inner].mean() > 0.95, seed
        assert magenta[outer].mean() < 0.01, seed
        assert np.fliplr(magenta)[inner].mean() < 0.5  # a misaligned mask would fail
        augmented += int(not np.array_equal(frames[-1], reference[-1]))
    assert augmented == 10


def test_padding_is_void_and_mean_coloured(frame: tuple[np.ndarray, np.ndarray]) -> None:
    image, panoptic = frame
    transform = train_transform(scale_range=(0.5, 0.5), hflip=False, color_jitter=0.0)
    frames, pan = transform(image[None], panoptic, 0)
    # resized to 64x96, scaled to 32x48, padded back to 64x96 around the centre
    outside = np.ones((64, 96), bool)
    outside[16:48, 24:72] = False
    assert (pan[outside] == IGNORE).all()
    assert (pan[~outside] != IGNORE).mean() > 0.8
    mean = np.round(255 * np.asarray(IMAGENET_MEAN))
    assert (np.abs(frames[0][outside].astype(int) - mean) <= 1).all()
    target = panoptic_targets(pan, MOT)
    assert (target["semantic"][torch.from_numpy(outside)] == 255).all()


def test_same_seed_same_clip_and_eval_is_deterministic(frame: tuple[np.ndarray, np.ndarray]) -> None:
    image, panoptic = frame
    clip = np.stack([image, image])
    a = train_transform()(clip, panoptic, 123)
    b = train_transform()(clip, panoptic, 123)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    evaluation = ClipTransform((48, 80), train=False, ignore_value=IGNORE)
    c, d = evaluation(clip, panoptic, 1), evaluation(clip, panoptic, 2)
    assert np.array_equal(c[0], d[0]) and np.array_equal(c[1], d[1])
    assert c[0].shape == (2, 48, 80, 3)
    native = ClipTransform(None, train=False)
    assert native(clip, panoptic)[0] is clip


def test_instances_cut_away_are_dropped_and_boxes_fit() -> None:
    panoptic = np.full((40, 40), 1000, np.int32)  # building
    panoptic[0:3, 0:3] = 4001  # a small person in the corner
    panoptic[20:30, 20:26] = 4002
    image = np.zeros((40, 40, 3), np.uint8)
    transform = ClipTransform(
        (40, 40), train=True, scale_range=(1.0, 2.0), color_jitter=0.0, ignore_value=IGNORE
    )
    counts = set()
    for seed in range(30):
        _, pan = transform(image[None], panoptic, seed)
        target = panoptic_targets(pan, MOT)
        counts.add(target["masks"].shape[0])
        assert (target["masks"].flatten(1).sum(1) > 0).all()
        assert torch.equal(target["boxes"], masks_to_boxes_xyxy(target["masks"].bool()))
        assert set(target["track_ids"].tolist()) <= {1, 2}
    assert min(counts) < 2  # some crops remove an instance entirely


def test_panoptic_targets_of_a_crafted_map() -> None:
    semantic = np.array([[4, 4, 0, 255], [4, 4, 0, 4], [1, 1, 4, 4]], np.int32)
    instance = np.array([[7, 7, 0, 0], [7, 7, 0, 0], [0, 0, 3, 3]], np.int32)
    target = panoptic_targets(to_panoptic(semantic, instance, MOT), MOT, identity_base=256000)
    assert target["track_ids"].tolist() == [3, 7]  # by panoptic id; the crowd pixel (4, 0) is no instance
    assert target["labels"].tolist() == [4, 4]
    assert target["identities"].tolist() == [256000 + 4003, 256000 + 4007]
    assert target["boxes"].tolist() == [[2.0, 2.0, 4.0, 3.0], [0.0, 0.0, 2.0, 2.0]]
    assert target["semantic"].tolist() == semantic.tolist()
    assert target["panoptic"][1, 3] == 4000 and target["panoptic"][0, 3] == 255000
    unlabelled = panoptic_targets(to_panoptic(semantic, instance, MOT), MOT, labelled=False)
    assert unlabelled["masks"].shape == (0, 3, 4) and (unlabelled["semantic"] == 255).all()
    assert unlabelled["boxes"].shape == (0, 4) and unlabelled["boxes"].dtype == torch.float32


def test_normalisation_round_trip() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    tensor = normalize_frames(frames)
    assert tensor.shape == (2, 3, 5, 7) and tensor.dtype == torch.float32
    expected = (frames[0, 1, 2, 0] / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert tensor[0, 0, 1, 2].item() == pytest.approx(expected, abs=1e-6)
    assert np.array_equal(denormalize_frames(tensor).permute(0, 2, 3, 1).numpy(), frames)


def test_bad_transform_arguments() -> None:
    with pytest.raises(ValueError, match="image_size"):
        ClipTransform((0, 10))
    with pytest.raises(ValueError, match="scale_range"):
        ClipTransform((10, 10), scale_range=(1.5, 1.0))


def test_scale_and_crop_at_the_native_size_keep_each_clips_size(frame: tuple[np.ndarray, np.ndarray]) -> None:
    image, panoptic = frame
    transform = ClipTransform(None, train=True, scale_range=(0.5, 1.5), hflip=False, color_jitter=0.0)
    padded = cropped = 0
    for seed in range(12):
        # clips of two native sizes (KITTI frames differ by a few pixels): each keeps its own
        for clip, labels in ((image[None, :90, :150], panoptic[:90, :150]), (image[None], panoptic)):
            frames, pan = transform(clip, labels, seed, ignore_value=IGNORE)
            assert frames.shape == clip.shape and pan.shape == labels.shape
        void_border = (pan[0] == IGNORE).all() and (pan[:, 0] == IGNORE).all() and (pan[-1] == IGNORE).all()
        padded += int(void_border)
        cropped += int(not void_border and not np.array_equal(pan, panoptic))
    assert padded > 0 and cropped > 0  # scaled down (padded with void) and up (cropped)


def test_colour_jitter_keeps_greys_grey_and_moves_colours(frame: tuple[np.ndarray, np.ndarray]) -> None:
    image, panoptic = frame
    grey = np.full((1, 20, 30, 3), 120, np.uint8)
    transform = ClipTransform(None, train=True, scale_range=(1.0, 1.0), hflip=False, color_jitter=0.4)
    jittered = 0
    for seed in range(10):
        out, _ = transform(grey, panoptic[:20, :30], seed)
        assert (out.max(axis=-1).astype(int) - out.min(axis=-1) <= 1).all()  # saturation and hue keep grey
        colour, _ = transform(image[None], panoptic, seed)
        jittered += int(np.abs(colour.astype(int) - image).mean() > 2)
    assert jittered >= 5  # p = 0.8
