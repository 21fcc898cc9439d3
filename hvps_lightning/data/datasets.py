"""Frame index and clip datasets over a dataset root (STEP, COCO panoptic, MOTS20 / KITTI-MOTS).

A **clip** is the target frame and its temporal neighbours: by default the ``clip_length - 1``
previous frames (``clip_mode="previous"``, target last), or a window centred on the target
(``clip_mode="centred"``). Windows are clamped to the sequence, so a sequence start repeats
the first frame: target 0 -> ``[f0, f0, f0]``, target 1 -> ``[f0, f0, f1]``. Only the target
frame carries labels (docs/ARCHITECTURE.md "Batches").

An item is a list of ``clips_per_item`` clips of one sequence: the first targets frame
``index``, the others a random frame ``clip_gap`` frames away (so the embedding loss sees
one identity at different times). Single-image datasets (``kitti_panoptic``) treat every
image as a one-frame sequence: a clip repeats it ``clip_length`` times and the extra clips are
differently augmented copies.

Labels are converted from the dataset's own classes to ``label_spec``'s through
:func:`hvps_lightning.structures.specs.label_lut` (e.g. MOTS20 pedestrians -> MOTChallenge-STEP
person, everything else void). Every file is checked when it is read, with the messages of
``hvps data check``.

Example:
    >>> ds = ClipDataset("motchallenge_step", "data/motchallenge_step", split="val")  # doctest: +SKIP
    >>> clip = ds[0][0]; clip["frames"].shape  # doctest: +SKIP
    torch.Size([3, 192, 320, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from hvps_lightning.data.layout import FrameFiles, SequenceFiles, layout_splits, scan_root
from hvps_lightning.data.loaders import DecodedImage, decode_image, load_frame, load_sequence_mots, resize_to
from hvps_lightning.data.transforms import (
    ClipTransform,
    panoptic_targets,
    remap_semantic,
    semantic_targets,
    to_panoptic,
)
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.mots_txt import MOTSObject
from hvps_lightning.structures.specs import DatasetSpec, SplitSpec, get_spec, label_lut

ClipMode = Literal["previous", "centred"]
#: which targets a clip carries: ``all`` (instances, boxes, masks, identities, semantic, panoptic)
#: or ``semantic`` (the semantic map alone, for models that read nothing else).
Targets = Literal["all", "semantic"]

#: identities are ``sequence number * IDENTITY_STRIDE[spec] + panoptic id``; a panoptic id is
#: below ``256 * label_divisor`` (semantic ids are 8-bit).
_SEMANTIC_RANGE = 256


@dataclass(frozen=True)
class FrameRecord:
    """One frame of the index.

    Attributes:
        sequence: the sequence name.
        frame: the frame's file stem.
        frame_index: its position in the sequence (0-based).
        image_path: the image file.
        panoptic_path: its panoptic map (STEP or COCO PNG), ``None`` if labels live elsewhere
            (MOTS txt) or the frame is unlabelled.
    """

    sequence: str
    frame: str
    frame_index: int
    image_path: Path
    panoptic_path: Path | None


@dataclass
class FrameIndex:
    """The sequences of one split of a dataset root, with their frames in order.

    Attributes:
        spec: the dataset's spec (its layout and classes).
        root: the dataset root.
        split: the split name.
        split_spec: where the split lives.
        layout: ``step``, ``coco_panoptic``, ``mots20`` or ``kitti_mots``.
        sequences: the selected sequences, in order.
    """

    spec: DatasetSpec
    root: Path
    split: str
    split_spec: SplitSpec
    layout: str
    sequences: list[SequenceFiles]

    @property
    def records(self) -> list[FrameRecord]:
        """Every frame, sequence by sequence, in temporal order."""
        return [
            FrameRecord(seq.name, frame.stem, i, frame.image, frame.label)
            for seq in self.sequences
            for i, frame in enumerate(seq.frames)
        ]

    @property
    def labelled(self) -> bool:
        """Whether the split has ground truth."""
        return self.split_spec.has_labels and all(seq.labelled for seq in self.sequences)

    def __len__(self) -> int:
        return sum(len(seq.frames) for seq in self.sequences)


def build_frame_index(
    dataset: str | DatasetSpec,
    root: str | Path,
    split: str = "train",
    sequences: Sequence[str] | None = None,
    max_sequences: int | None = None,
    max_frames: int | None = None,
) -> FrameIndex:
    """Index one split of a dataset root.

    Sequence selection: ``sequences`` if given; otherwise, when the split's folder is shared
    with another split (MOTChallenge-STEP keeps train 0009 and val 0002 in ``train/``), the
    split's official sequences; otherwise every sequence in the split's folder.

    Args:
        dataset: the dataset spec (or name) whose layout the root has.
        root: the dataset root.
        split: a split name of the layout (``train``, ``val``, ``test``).
        sequences: use exactly these sequences.
        max_sequences: keep only the first N sequences (fast runs).
        max_frames: keep only the first N frames of each sequence (fast runs).

    Raises:
        HVPSError: for a missing root, an unknown split or sequence, or the first layout
            problem of the selected sequences (as ``hvps data check`` reports it).
    """
    spec, root = get_spec(dataset), Path(root)
    if not root.exists():
        hint = (
            f"generate one with `hvps synth --preset {spec.name} --out {root}` or "
            if spec.layout != "mots"
            else ""
        )
        raise HVPSError(
            f"{root}: dataset root not found; {hint}see data/README.md for where the real dataset goes"
        )
    splits = layout_splits(spec, root)
    if split not in splits:
        raise HVPSError(f"dataset {spec.name!r} has no split {split!r}; splits: {', '.join(splits)}")
    split_spec = splits[split]
    scan = scan_root(spec, root, folders=[split_spec.folder])
    found = [s for s in scan.sequences if s.split_folder == split_spec.folder]
    by_name = {s.name: s for s in found}
    if sequences is not None:
        missing = [name for name in sequences if name not in by_name]
        if missing:
            raise HVPSError(
                f"{root}: sequences {', '.join(missing)} not found in split {split!r} "
                f"(found: {', '.join(by_name) or 'none'})"
            )
        selected = [by_name[name] for name in sequences]
    else:
        shared = sum(1 for s in splits.values() if s.folder == split_spec.folder) > 1
        if shared and split_spec.sequences:
            selected = [by_name[name] for name in split_spec.sequences if name in by_name]
            if not selected and not scan.problems:
                raise HVPSError(
                    f"{root}: none of the sequences of split {split!r} ({', '.join(split_spec.sequences)}) "
                    f"found in folder {split_spec.folder!r}"
                )
        else:
            selected = found
    if max_sequences is not None:
        selected = selected[: max(0, max_sequences)]
    keys = {s.key for s in selected}
    for problem in scan.problems:
        if problem.sequence is None or problem.sequence in keys:
            raise problem.error()
    if not selected:
        raise HVPSError(f"{root}: no sequences found for split {split!r}")
    if max_frames is not None:
        selected = [
            SequenceFiles(
                s.split_folder,
                s.name,
                s.frames[: max(1, max_frames)],
                s.labelled,
                s.mots_txt,
                s.class_of_category,
                s.directory,
            )
            for s in selected
        ]
    return FrameIndex(spec, root, split, split_spec, scan.layout, selected)


def clip_offsets(clip_length: int, clip_mode: ClipMode = "previous", stride: int = 1) -> list[int]:
    """Frame offsets of a clip relative to its target frame.

    Example:
        >>> clip_offsets(3), clip_offsets(3, "centred"), clip_offsets(4, "centred", 2)
        ([-2, -1, 0], [-1, 0, 1], [-4, -2, 0, 2])
    """
    if clip_length < 1 or stride < 1:
        raise HVPSError(f"clip_length and clip_stride must be >= 1, got {clip_length} and {stride}")
    if clip_mode == "previous":
        return [-(clip_length - 1 - k) * stride for k in range(clip_length)]
    if clip_mode == "centred":
        return [(k - clip_length // 2) * stride for k in range(clip_length)]
    raise HVPSError(f"clip_mode must be 'previous' or 'centred', got {clip_mode!r}")


def target_index_of(clip_length: int, clip_mode: ClipMode = "previous") -> int:
    """Index in the clip of the frame the targets belong to (T - 1 or T // 2)."""
    return clip_length - 1 if clip_mode == "previous" else clip_length // 2


def clip_frame_indices(
    target: int, num_frames: int, clip_length: int, clip_mode: ClipMode = "previous", stride: int = 1
) -> list[int]:
    """Frame indices of the clip of ``target``, clamped to the sequence (edges repeat).

    Example:
        >>> clip_frame_indices(0, 10, 3), clip_frame_indices(1, 10, 3)
        ([0, 0, 0], [0, 0, 1])
        >>> clip_frame_indices(9, 10, 3, "centred")
        [8, 9, 9]
    """
    return [min(max(target + o, 0), num_frames - 1) for o in clip_offsets(clip_length, clip_mode, stride)]


class ClipDataset(Dataset):
    """Clips of one split of a dataset root, with targets for the target frame of each clip.

    ``dataset[i]`` is a list of ``clips_per_item`` clip dicts; the first clip targets the
    ``i``-th frame of the index (sequences in order, frames in order). A clip dict holds
    ``frames`` uint8 (T, H, W, 3) RGB (the collate function normalises them straight into the
    batch's float32 (B, T, 3, H, W)), ``target`` (docs/ARCHITECTURE.md target dict),
    ``meta`` (``sequence``, ``frame``, ``frame_index``, ``orig_size``, ``image_path``) and
    ``target_index``. :func:`hvps_lightning.data.datamodule.collate_clips` batches items.

    Args:
        dataset: spec (or name) of the dataset the root holds (its layout and classes).
        root: the dataset root.
        split: the split to read.
        label_spec: the spec the targets are expressed in (default: ``dataset``); classes are
            converted with the class map between the two.
        clip_length: frames per clip (T).
        clip_mode: ``previous`` (target last) or ``centred`` (target in the middle).
        clip_stride: frames between consecutive clip frames.
        clips_per_item: clips per item (1 for evaluation).
        clip_gap: (min, max) frames between the first clip's target and the others'.
        transform: the clip transform (resize/augmentation); ``None``: native size, no augmentation.
        sequences: use exactly these sequences.
        max_sequences: keep the first N sequences.
        max_frames: keep the first N frames of each sequence.
        targets: ``all`` (the full target dict) or ``semantic`` (``semantic`` only: no instance
            masks, boxes or identities are built).
        reduced_decode: decode JPEG frames at 1/2, 1/4 or 1/8 of their size when the
            transform's ``image_size`` allows (faster; pixels differ slightly from a full decode
            followed by the resize).
        identity_offset: sequences of other datasets numbered before this one's, so that the
            identities of datasets joined into one training set never collide.
    """

    def __init__(
        self,
        dataset: str | DatasetSpec,
        root: str | Path,
        split: str = "train",
        label_spec: str | DatasetSpec | None = None,
        clip_length: int = 3,
        clip_mode: ClipMode = "previous",
        clip_stride: int = 1,
        clips_per_item: int = 1,
        clip_gap: tuple[int, int] = (1, 10),
        transform: ClipTransform | None = None,
        sequences: Sequence[str] | None = None,
        max_sequences: int | None = None,
        max_frames: int | None = None,
        targets: Targets = "all",
        reduced_decode: bool = False,
        identity_offset: int = 0,
    ) -> None:
        super().__init__()
        if targets not in ("all", "semantic"):
            raise HVPSError(f"targets must be 'all' or 'semantic', got {targets!r}")
        self.identity_offset = int(identity_offset)
        self.offsets = clip_offsets(clip_length, clip_mode, clip_stride)
        if clips_per_item < 1:
            raise HVPSError(f"clips_per_item must be >= 1, got {clips_per_item}")
        if len(clip_gap) != 2 or clip_gap[0] < 0 or clip_gap[0] > clip_gap[1]:
            raise HVPSError(f"clip_gap must be (min, max) with 0 <= min <= max, got {tuple(clip_gap)}")
        self.index = build_frame_index(dataset, root, split, sequences, max_sequences, max_frames)
        self.source_spec = self.index.spec
        self.spec = get_spec(label_spec) if label_spec is not None else self.source_spec
        self.clip_length = clip_length
        self.clip_mode: ClipMode = clip_mode
        self.target_index = target_index_of(clip_length, clip_mode)
        self.clips_per_item = clips_per_item
        self.clip_gap = (int(clip_gap[0]), int(clip_gap[1]))
        self.transform = transform
        self.targets: Targets = targets
        self.reduced_decode = reduced_decode
        self.sequences = self.index.sequences
        # MOTS layouts keep labels in one txt per sequence: read and validate them once.
        self._mots: list[dict[int, list[MOTSObject]]] = [
            load_sequence_mots(seq) if self.source_spec.layout == "mots" and seq.labelled else {}
            for seq in self.sequences
        ]
        self._lut: np.ndarray | None = None
        if self.spec.name != self.source_spec.name:
            self._lut = np.asarray(label_lut(self.source_spec.name, self.spec.name), dtype=np.int32)
        self._items: list[tuple[int, int]] = [
            (s, f) for s, seq in enumerate(self.sequences) for f in range(len(seq.frames))
        ]
        self._identity_stride = _SEMANTIC_RANGE * self.spec.label_divisor

    # -- index ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    @property
    def sequence_names(self) -> list[str]:
        """Names of the sequences, in order."""
        return [seq.name for seq in self.sequences]

    def item_of(self, index: int) -> tuple[str, int]:
        """(sequence name, frame index) of the first clip's target of item ``index``."""
        s, f = self._items[index]
        return self.sequences[s].name, f

    def clip_indices(self, sequence: int, target: int) -> list[int]:
        """Frame indices of the clip of ``target`` in sequence number ``sequence``."""
        n = len(self.sequences[sequence].frames)
        return [min(max(target + o, 0), n - 1) for o in self.offsets]

    # -- items ------------------------------------------------------------------------
    def _random(self) -> np.random.Generator:
        # torch's RNG is seeded per DataLoader worker (and by seed_everything), so items
        # differ between workers and epochs yet are reproducible.
        return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))

    def _other_target(self, sequence: int, target: int, rng: np.random.Generator) -> int:
        n = len(self.sequences[sequence].frames)
        gap = int(rng.integers(self.clip_gap[0], self.clip_gap[1] + 1))
        direction = 1 if rng.random() < 0.5 else -1
        for step in (direction * gap, -direction * gap):
            if 0 <= target + step < n:
                return target + step
        return min(max(target + direction * gap, 0), n - 1)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        sequence, target = self._items[index]
        rng = self._random()
        targets = [target] + [
            self._other_target(sequence, target, rng) for _ in range(self.clips_per_item - 1)
        ]
        images: dict[int, DecodedImage] = {}
        return [self.load_clip(sequence, t, int(rng.integers(0, 2**31 - 1)), images) for t in targets]

    def load_clip(
        self,
        sequence: int,
        target: int,
        seed: int | None = None,
        cache: dict[int, DecodedImage] | None = None,
    ) -> dict[str, Any]:
        """Load, check, transform and package the clip of frame ``target`` of sequence number ``sequence``."""
        seq = self.sequences[sequence]
        cache = {} if cache is None else cache
        transform = self.transform
        image_size = transform.image_size if transform is not None else None
        # Training at a fixed size draws the augmentation first, so that each frame is resized
        # once, from its decoded size straight to the draw's scaled size.
        draw = None
        if transform is not None and transform.train and image_size is not None:
            draw = transform.draw(seed, *image_size)
        size = draw.scaled_size if draw is not None else image_size
        min_decode = image_size if self.reduced_decode else None  # never coarser than image_size

        def decoded(i: int) -> DecodedImage:
            if i not in cache:
                cache[i] = decode_image(seq.frames[i].image, min_decode)
            return cache[i]

        target_frame = seq.frames[target]
        mots = self._mots[sequence]
        loaded = load_frame(self.source_spec, seq, target_frame, mots, size=size, image=decoded(target))
        indices = self.clip_indices(sequence, target)
        for i in indices:
            if decoded(i).size != loaded.size:
                (height, width), (other_h, other_w) = loaded.size, decoded(i).size
                raise HVPSError(
                    f"{seq.frames[i].image}: size {other_w}x{other_h} differs from "
                    f"{target_frame.image} ({width}x{height}) of the same sequence"
                )
        frames = np.stack(
            [loaded.image if i == target else resize_to(decoded(i).pixels, size) for i in indices]
        )
        labelled = loaded.semantic is not None and loaded.instance is not None
        spec = self.spec
        if self.targets == "semantic":
            labels, fill = self._semantic(loaded.semantic, frames.shape[1:3]), spec.ignore_label
        else:
            labels = self._panoptic(loaded.semantic, loaded.instance, frames.shape[1:3])
            fill = spec.ignore_label * spec.label_divisor
        if draw is not None:
            frames, labels = transform.apply(frames, labels, draw, ignore_value=fill)
        elif transform is not None:  # evaluation, or training at the native size
            frames, labels = transform(frames, labels, seed, ignore_value=fill)
        if self.targets == "semantic":
            target_dict = semantic_targets(labels)
        else:
            base = (self.identity_offset + sequence) * self._identity_stride
            target_dict = panoptic_targets(labels, spec, identity_base=base, labelled=labelled)
        meta = _meta(seq, target_frame, target, loaded.size)
        # the size the network sees before the collate function pads the batch
        meta["input_size"] = (int(frames.shape[1]), int(frames.shape[2]))
        return {
            "frames": torch.from_numpy(frames),
            "target": target_dict,
            "meta": meta,
            "target_index": self.target_index,
        }

    def _semantic(self, semantic: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        spec = self.spec
        if semantic is None:
            return np.full(shape, spec.ignore_label, dtype=np.int32)
        if self._lut is not None:
            return remap_semantic(semantic, self._lut)
        return semantic.astype(np.int32, copy=False)

    def _panoptic(
        self, semantic: np.ndarray | None, instance: np.ndarray | None, shape: tuple[int, ...]
    ) -> np.ndarray:
        spec = self.spec
        if semantic is None or instance is None:
            return np.full(shape, spec.ignore_label * spec.label_divisor, dtype=np.int32)
        if self._lut is not None:
            semantic = remap_semantic(semantic, self._lut)
        return to_panoptic(semantic, instance, spec)


class FrameDataset(ClipDataset):
    """Single frames (clips of length 1, one clip per item), for per-frame models and inspection."""

    def __init__(
        self, dataset: str | DatasetSpec, root: str | Path, split: str = "train", **kwargs: Any
    ) -> None:
        kwargs.update(clip_length=1, clip_mode="previous", clips_per_item=kwargs.get("clips_per_item", 1))
        super().__init__(dataset, root, split, **kwargs)


def _meta(seq: SequenceFiles, frame: FrameFiles, frame_index: int, shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "sequence": seq.name,
        "frame": frame.stem,
        "frame_index": frame_index,
        "orig_size": (int(shape[0]), int(shape[1])),
        "image_path": str(frame.image),
    }
