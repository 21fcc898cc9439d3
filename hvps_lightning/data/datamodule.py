"""``HVPSDataModule``: one DataModule for every finetuning stage and both models.

``finetune_stage`` picks the dataset, its spec and the class handling:

| finetune_stage | dataset (default root) | label space |
|---|---|---|
| ``kitti_panoptic`` | KITTI panoptic, COCO panoptic (``data/kitti_panoptic``) | Cityscapes-19 |
| ``kitti_step`` | KITTI-STEP (``data/kitti_step``) | Cityscapes-19 |
| ``mot_step`` | MOTChallenge-STEP (``data/motchallenge_step``) | MOTChallenge-STEP-7 |

so moving to the next stage is one config change (``finetune_stage`` and, for a non-default
location, ``root``). ``dataset`` reads another dataset in the stage's label space through the
class maps of :mod:`hvps_lightning.structures.specs` (e.g. ``dataset: mots`` under ``mot_step``:
MOTS20 pedestrians become persons, everything else void); ``train_sources`` trains on the
sequences of several roots at once (e.g. MOTS20 next to MOTChallenge-STEP 0009).

Training and validation never share footage unless told so (``allow_shared_footage``): MOTS20-02
and MOTChallenge-STEP 0002 are the same video (MOT17-02), and so are KITTI-MOTS and KITTI-STEP
sequences of one number (:func:`~hvps_lightning.structures.specs.footage`); a split that would
validate on frames the model trained on is refused with one line when the data is set up.

Batches follow docs/ARCHITECTURE.md "Batches" exactly (:func:`collate_clips`). Training items
hold ``clips_per_item`` clips of one sequence, so a training batch has ``batch_size *
clips_per_item`` clips; val/test/predict iterate each sequence's frames in order, one clip
per item. Datasets are plain map-style datasets: under DDP Lightning adds a shuffling
``DistributedSampler`` for training, and val/test/predict use
:class:`ContiguousDistributedSampler`, which hands each rank a contiguous block of items so
that every rank sees its frames in sequence order. Every clip carries its own previous frames
and its ``meta`` (sequence, frame index), so results gathered from several ranks can be put
back in order (the last block repeats the last item to keep ranks in step).

Example (YAML, ``hvps fit --config``)::

    data:
      class_path: hvps_lightning.data.datamodule.HVPSDataModule
      init_args: {finetune_stage: mot_step, root: data/motchallenge_step, image_size: [192, 320]}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, get_worker_info

from hvps_lightning.data.datasets import ClipDataset, ClipMode, Targets
from hvps_lightning.data.transforms import ClipTransform, normalize_batch_frames, normalize_frames
from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.specs import DatasetSpec, class_map, footage, get_spec, stage_spec

FinetuneStage = Literal["kitti_panoptic", "kitti_step", "mot_step"]
DatasetName = Literal["kitti_panoptic", "kitti_step", "motchallenge_step", "mots"]
Role = Literal["train", "val", "test", "predict"]


@dataclass(frozen=True)
class TrainSource:
    """A dataset root whose sequences the training set reads (in the stage's label space).

    Attributes:
        dataset: the dataset the root holds (its layout and classes).
        root: the dataset root.
        split: the split of the root to read.
        sequences: exactly these sequences of the split (default: the split's own).
    """

    dataset: DatasetName
    root: str
    split: str = "train"
    sequences: list[str] | None = None


class ClipCollate:
    """Batch items (lists of clip dicts) into the docs/ARCHITECTURE.md batch.

    The clips' uint8 frames are normalised straight into the batch tensor (no float copy per
    clip). Clips of different sizes (native-size KITTI frames differ by a few pixels) are padded at
    the bottom/right to the largest: frames with 0 (the normalised mean colour), ``semantic``
    with the ignore label, ``panoptic`` with ``ignore_label * divisor``, masks with 0.

    With ``normalize=False`` the batch keeps the uint8 frames, (B, T, H, W, 3) padded with 0,
    for :func:`normalize_batch_frames` to finish on the device.

    Args:
        ignore_label: the semantic void label of the spec.
        label_divisor: the spec's panoptic label divisor.
        normalize: normalise the frames here (``False``: leave it to the device).
    """

    def __init__(self, ignore_label: int = 255, label_divisor: int = 1000, normalize: bool = True) -> None:
        self.ignore_label = ignore_label
        self.label_divisor = label_divisor
        self.normalize = normalize

    def __call__(self, items: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any]:
        """Collate ``items`` (each a list of clips of one sequence) into one batch."""
        clips: list[dict[str, Any]] = []
        metas: list[dict[str, Any]] = []
        for group, item in enumerate(items):
            for clip in item:
                clips.append(clip)
                metas.append({**clip["meta"], "group": group})
        if not clips:
            raise HVPSError("collate_clips: empty batch")
        target_indices = {int(c["target_index"]) for c in clips}
        if len(target_indices) != 1:
            raise ValueError(f"clips of one batch have different target indices {sorted(target_indices)}")
        height = max(int(c["frames"].shape[1]) for c in clips)
        width = max(int(c["frames"].shape[2]) for c in clips)
        frames = _batch_frames([c["frames"] for c in clips], height, width, self.normalize)
        targets = [self._pad_target(c["target"], height, width) for c in clips]
        return {"frames": frames, "target_index": target_indices.pop(), "targets": targets, "meta": metas}

    def _pad_target(
        self, target: dict[str, torch.Tensor], height: int, width: int
    ) -> dict[str, torch.Tensor]:
        if tuple(target["semantic"].shape) == (height, width):
            return target
        fill = {"masks": 0, "semantic": self.ignore_label, "panoptic": self.ignore_label * self.label_divisor}
        # a semantic-only target (targets="semantic") holds no masks or panoptic map
        return {key: _pad(v, height, width, fill[key]) if key in fill else v for key, v in target.items()}


class ContiguousDistributedSampler(DistributedSampler):
    """Evaluation sampler for DDP that gives each rank one contiguous, ordered block of items.

    Lightning's default ``DistributedSampler`` deals items round-robin (rank r gets r, r + W,
    ...), so no rank sees a sequence in order. Here rank r gets items ``[r * n, (r + 1) * n)``
    (the last block padded by repeating the last item, so every rank runs the same number of
    steps), i.e. whole runs of consecutive frames. Being a ``DistributedSampler``, Lightning
    leaves it in place.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)  # type: ignore[arg-type]
        start = self.rank * self.num_samples
        return iter([min(i, size - 1) for i in range(start, start + self.num_samples)])


def _batch_frames(clips: Sequence[torch.Tensor], height: int, width: int, normalize: bool) -> torch.Tensor:
    """(B, T, 3, H, W) float32 from B clips of uint8 (T, h, w, 3) frames, normalised straight into the batch.

    A clip smaller than (H, W) is padded at the bottom/right with 0 (the normalised mean colour).
    Without ``normalize``: the uint8 frames, (B, T, H, W, 3), padded with 0.
    """
    length = int(clips[0].shape[0])
    if any(int(clip.shape[0]) != length for clip in clips):
        lengths = sorted({int(clip.shape[0]) for clip in clips})
        raise ValueError(f"clips of one batch have different lengths {lengths}")
    if not normalize:
        frames = _new_batch((len(clips), length, height, width, 3), torch.uint8)
        for slot, clip in zip(frames, clips, strict=True):
            if tuple(clip.shape[1:3]) != (height, width):
                slot.zero_()
            slot[:, : clip.shape[1], : clip.shape[2]] = clip
        return frames
    tensor = _new_batch((len(clips), length, 3, height, width), torch.float32)
    batch = tensor.numpy()
    for slot, clip in zip(batch, clips, strict=True):
        h, w = int(clip.shape[1]), int(clip.shape[2])
        if (h, w) == (height, width):
            normalize_frames(clip, out=slot)
            continue
        slot.fill(0.0)
        slot[:, :, :h, :w] = normalize_frames(clip).numpy()
    return tensor


def _new_batch(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised batch tensor; in shared memory inside a DataLoader worker.

    Sending the batch to the main process then copies nothing (torch's ``default_collate`` does
    the same).
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=dtype).new(storage).resize_(shape)


def _pad(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return tensor
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def _one_thread_per_worker(worker_id: int) -> None:
    """Keep each DataLoader worker to one OpenCV thread, as PyTorch does for its own ops.

    Several workers each running OpenCV's thread pool would fight over the same cores.
    """
    import cv2

    cv2.setNumThreads(1)


def collate_clips(
    items: Sequence[Sequence[dict[str, Any]]], spec: DatasetSpec | str | None = None
) -> dict[str, Any]:
    """Collate items of a :class:`~hvps_lightning.data.datasets.ClipDataset` (see :class:`ClipCollate`)."""
    if spec is None:
        return ClipCollate()(items)
    spec = get_spec(spec)
    return ClipCollate(spec.ignore_label, spec.label_divisor)(items)


class HVPSDataModule(L.LightningDataModule):
    """Clips of STEP / KITTI panoptic / MOTS datasets for the MOTS and the semantic models.

    Args:
        finetune_stage: the finetuning stage: ``kitti_panoptic``, ``kitti_step`` or ``mot_step``; selects the
            label space (spec) and the default dataset.
        root: dataset root (default ``data/<dataset name>``).
        dataset: the dataset the root holds, if not the stage's own (``mots``: MOTS20 or
            KITTI-MOTS); its classes are mapped into the stage's label space.
        batch_size: items per batch (a training item holds ``clips_per_item`` clips).
        num_workers: DataLoader worker processes.
        clip_length: frames per clip (T).
        clip_mode: ``previous`` (target frame last, T - 1 previous frames) or ``centred``.
        clip_stride: frames between consecutive frames of a clip.
        clips_per_item: clips per training item (val/test/predict use 1).
        clip_gap: (min, max) frames between the targets of the clips of one training item.
        image_size: (height, width) all frames are resized to; ``None`` keeps the native size.
        augment: random augmentation for training.
        scale_range: random scale factors before cropping back to ``image_size`` (or, when it
            is ``None``, to the frame's native size).
        hflip: random horizontal flips.
        color_jitter: colour jitter strength (0: off).
        train_split: split for ``fit``.
        val_split: split for validation (``None``: no validation).
        test_split: split for ``test`` (needs labels).
        predict_split: split for ``predict`` (may be unlabelled, e.g. ``test``).
        sequences: per role (``train``, ``val``, ``test``, ``predict``), the sequences to use
            instead of the split's own.
        max_sequences: keep only the first N sequences of every split (fast runs).
        max_frames: keep only the first N frames of every sequence (fast runs).
        pin_memory: DataLoader ``pin_memory``.
        targets: what each clip's ``target`` holds: ``all`` (instances, boxes, masks, track ids,
            identities, ``semantic``, ``panoptic``: the MOTS model) or ``semantic`` (the semantic
            map alone: the semantic model, which reads nothing else; skips building the rest).
        reduced_decode: decode JPEG frames at 1/2, 1/4 or 1/8 of their size when ``image_size``
            allows (within 1 %): faster loading, pixels slightly different from a full decode
            followed by the resize. PNG frames are always decoded whole.
        normalize_on_device: the DataLoader yields uint8 frames (B, T, H, W, 3), a quarter of
            the bytes, and :meth:`on_after_batch_transfer` normalises them on the device into
            the same float32 (B, T, 3, H, W) the model gets otherwise; the workers skip the
            normalisation.
        train_sources: train on the sequences of these roots (each in its own layout, classes
            mapped into the stage's) instead of ``root``'s ``train_split``; validation, test and
            prediction still read ``root``.
        allow_shared_footage: accept training and validation sequences of the same footage
            (refused by default: the validation would score frames the model trained on).
    """

    def __init__(
        self,
        finetune_stage: FinetuneStage = "mot_step",
        root: str | None = None,
        dataset: DatasetName | None = None,
        batch_size: int = 2,
        num_workers: int = 0,
        clip_length: int = 3,
        clip_mode: ClipMode = "previous",
        clip_stride: int = 1,
        clips_per_item: int = 2,
        clip_gap: tuple[int, int] = (1, 10),
        image_size: tuple[int, int] | None = None,
        augment: bool = True,
        scale_range: tuple[float, float] = (0.75, 1.25),
        hflip: bool = True,
        color_jitter: float = 0.2,
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "val",
        predict_split: str | None = "val",
        sequences: dict[str, list[str]] | None = None,
        max_sequences: int | None = None,
        max_frames: int | None = None,
        pin_memory: bool = False,
        targets: Targets = "all",
        reduced_decode: bool = False,
        normalize_on_device: bool = False,
        train_sources: list[TrainSource] | None = None,
        allow_shared_footage: bool = False,
    ) -> None:
        super().__init__()
        # the model owns `dataset` (linked from this module); saving it here too would clash
        # with the model's value when Lightning merges both hparams
        self.save_hyperparameters(ignore=["dataset"])
        self.finetune_stage = finetune_stage
        self._spec = stage_spec(finetune_stage)
        self.source_spec = get_spec(dataset) if dataset is not None else self._spec
        self.root = Path(root) if root is not None else Path("data") / self.source_spec.name
        if batch_size < 1:
            raise HVPSError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise HVPSError(f"num_workers must be >= 0, got {num_workers}")
        if clips_per_item < 1:
            raise HVPSError(f"clips_per_item must be >= 1, got {clips_per_item}")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise HVPSError(f"image_size must be [height, width] with positive values, got {image_size}")
        unknown_roles = set(sequences or {}) - {"train", "val", "test", "predict"}
        if unknown_roles:
            raise HVPSError(f"sequences: unknown keys {sorted(unknown_roles)}; use train, val, test, predict")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.clip_length = clip_length
        self.clip_mode: ClipMode = clip_mode
        self.clip_stride = clip_stride
        self.clips_per_item = clips_per_item
        self.clip_gap = tuple(clip_gap)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.augment = augment
        self.scale_range = tuple(scale_range)
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.splits: dict[str, str | None] = {
            "train": train_split,
            "val": val_split,
            "test": test_split,
            "predict": predict_split,
        }
        self.sequences = {k: list(v) for k, v in (sequences or {}).items()}
        self.max_sequences = max_sequences
        self.max_frames = max_frames
        self.pin_memory = pin_memory
        if targets not in ("all", "semantic"):
            raise HVPSError(f"targets must be 'all' or 'semantic', got {targets!r}")
        self.targets: Targets = targets
        self.reduced_decode = reduced_decode
        self.normalize_on_device = normalize_on_device
        self.collate = ClipCollate(self._spec.ignore_label, self._spec.label_divisor, not normalize_on_device)
        self.datasets: dict[str, ClipDataset | ConcatDataset] = {}
        self.train_sources = [TrainSource(**s) if isinstance(s, dict) else s for s in train_sources or []]
        self.allow_shared_footage = allow_shared_footage
        # Fail fast on an impossible class mapping rather than in the first batch.
        for source in {self.source_spec.name, *(get_spec(s.dataset).name for s in self.train_sources)}:
            if source != self._spec.name:
                class_map(source, self._spec.name)

    # -- what the models link to --------------------------------------------------------
    @property
    def spec(self) -> DatasetSpec:
        """The spec of the labels (the stage's dataset spec)."""
        return self._spec

    @property
    def dataset_name(self) -> str:
        """Name of :attr:`spec`; the LightningCLI links it into ``model.init_args.dataset``."""
        return self._spec.name

    @property
    def target_index(self) -> int:
        """Index in a clip of the frame the targets belong to."""
        return self.clip_length - 1 if self.clip_mode == "previous" else self.clip_length // 2

    # -- datasets -------------------------------------------------------------------------
    def transform(self, train: bool) -> ClipTransform:
        """The clip transform of training (``train=True``) or evaluation."""
        return ClipTransform(
            image_size=self.image_size,
            train=train and self.augment,
            scale_range=self.scale_range,  # type: ignore[arg-type]
            hflip=self.hflip,
            color_jitter=self.color_jitter,
            ignore_value=self._spec.ignore_label * self._spec.label_divisor,
        )

    def dataset(self, role: Role) -> ClipDataset | ConcatDataset:
        """The dataset of ``role`` (``train``, ``val``, ``test``, ``predict``), built on first use.

        With ``train_sources``, the training set is the concatenation of one
        :class:`ClipDataset` per source.

        Raises:
            HVPSError: if the role has no split, or the root / split / files are bad.
        """
        if role not in self.datasets:
            if role == "train" and self.train_sources:
                parts: list[ClipDataset] = []
                for source in self.train_sources:
                    offset = sum(len(p.sequences) for p in parts)
                    parts.append(self._clip_dataset(role, get_spec(source.dataset), Path(source.root),
                                                    source.split, source.sequences, offset))  # fmt: skip
                self.datasets[role] = ConcatDataset(parts)
                return self.datasets[role]
            split = self.splits[role]
            if split is None:
                raise HVPSError(f"no {role} split configured ({role}_split is null)")
            self.datasets[role] = self._clip_dataset(
                role, self.source_spec, self.root, split, self.sequences.get(role)
            )
        return self.datasets[role]

    def clip_datasets(self, role: Role) -> list[ClipDataset]:
        """The :class:`ClipDataset` parts of the dataset of ``role`` (one, or one per training source)."""
        built = self.dataset(role)
        return list(built.datasets) if isinstance(built, ConcatDataset) else [built]  # type: ignore[arg-type]

    def _clip_dataset(
        self,
        role: Role,
        spec: DatasetSpec,
        root: Path,
        split: str,
        sequences: list[str] | None,
        identity_offset: int = 0,
    ) -> ClipDataset:
        train = role == "train"
        return ClipDataset(
            spec,
            root,
            split,
            label_spec=self._spec,
            clip_length=self.clip_length,
            clip_mode=self.clip_mode,
            clip_stride=self.clip_stride,
            clips_per_item=self.clips_per_item if train else 1,
            clip_gap=self.clip_gap,  # type: ignore[arg-type]
            transform=self.transform(train),
            sequences=sequences,
            max_sequences=self.max_sequences,
            max_frames=self.max_frames,
            targets=self.targets,
            reduced_decode=self.reduced_decode,
            identity_offset=identity_offset,
        )

    def check_footage(self) -> None:
        """Refuse validation sequences whose footage a training sequence shows (unless allowed).

        Raises:
            HVPSError: naming both sequences, their datasets and roots, and the way out.
        """
        if self.allow_shared_footage:
            return
        trained: dict[str, tuple[str, ClipDataset]] = {}
        for part in self.clip_datasets("train"):
            for seq in part.sequences:
                shown = footage(part.source_spec, seq.split_folder, seq.name)
                if shown is not None:
                    trained.setdefault(shown, (seq.name, part))
        for part in self.clip_datasets("val"):
            for seq in part.sequences:
                shown = footage(part.source_spec, seq.split_folder, seq.name)
                if shown in trained:
                    name, source = trained[shown]
                    where = f"{source.source_spec.name}, {source.index.root}"
                    val_where = f"{part.source_spec.name}, {part.index.root}"
                    raise HVPSError(
                        f"data: training sequence {name} ({where}) is the same footage ({shown}) as "
                        f"validation sequence {seq.name} ({val_where}), so validation would score frames "
                        "the model trained on; train on other sequences, or set "
                        "--data.init_args.allow_shared_footage true"
                    )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a Lightning stage (``fit``, ``validate``, ``test``, ``predict``) needs."""
        roles: tuple[Role, ...]
        if stage == "fit":
            roles = ("train", "val")
        elif stage == "validate":
            roles = ("val",)
        elif stage in ("test", "predict"):
            roles = (stage,)  # type: ignore[assignment]
        else:
            roles = ("train", "val", "test", "predict")
        for role in roles:
            if self.splits[role] is not None or (role == "train" and self.train_sources):
                self.dataset(role)
        if "train" in self.datasets and "val" in self.datasets:
            self.check_footage()

    def _loader(self, role: Role, shuffle: bool) -> DataLoader:
        dataset = self.dataset(role)
        sampler = None
        trainer = self.trainer
        if not shuffle and trainer is not None and trainer.world_size > 1:
            # Keep frames in order on every rank (Lightning keeps a DistributedSampler as it is).
            sampler = ContiguousDistributedSampler(dataset, trainer.world_size, trainer.global_rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_one_thread_per_worker if self.num_workers > 0 else None,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``normalize_on_device``, normalise the batch's uint8 frames where they now are."""
        frames = batch.get("frames") if isinstance(batch, dict) else None
        if isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8:
            batch["frames"] = normalize_batch_frames(frames, [m["input_size"] for m in batch["meta"]])
        return batch

    def train_dataloader(self) -> DataLoader:
        """Shuffled training items (``clips_per_item`` clips each)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation clips, sequence by sequence, frames in order (none if ``val_split`` is null)."""
        return self._loader("val", shuffle=False) if self.splits["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        """Test clips in order."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction clips in order."""
        return self._loader("predict", shuffle=False)
