"""Dataset specifications: classes, things, ignore label, label divisor, layout and splits.

Everything here is data taken from the official releases (STEP, KITTI panoptic, MOTS) and
their reference code. The class maps between datasets live here too; they carry classifier
weights from one finetuning stage to the next and convert labels between label spaces.

Example:
    >>> spec = get_spec("motchallenge_step")
    >>> spec.class_names[spec.thing_ids[0]]
    'person'
    >>> class_map("kitti_step", "motchallenge_step")[0]
    (0, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hvps_lightning.errors import HVPSError

Layout = Literal["step", "coco_panoptic", "mots"]

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip


@dataclass(frozen=True)
class SplitSpec:
    """Where one split lives: the official folder, the official sequences in it and their lengths.

    Attributes:
        folder: the split folder name on disk (``train``, ``val``, ``test``).
        sequences: the official sequence names of the split (empty: whatever is there).
        has_labels: whether the official release ships ground truth for this split.
        frames: the official number of frames of each sequence (where the release says; the
            schedules of ``hvps plan`` are sized from them when no dataset root is at hand).
        images: the official number of images of a split of single images (no sequences).
    """

    folder: str
    sequences: tuple[str, ...] = ()
    has_labels: bool = True
    frames: Mapping[str, int] = field(default_factory=dict)
    images: int | None = None

    def official_frames(self, sequences: Sequence[str] | None = None) -> int | None:
        """The official number of frames of ``sequences`` (default: the split's own), if known.

        Returns ``None`` when the release's count of one of them is not recorded here.
        """
        if not self.frames and not sequences:
            return self.images
        names = list(sequences) if sequences is not None else list(self.sequences)
        if not names or any(name not in self.frames for name in names):
            return None
        return sum(self.frames[name] for name in names)


@dataclass(frozen=True)
class DatasetSpec:
    """The facts about one dataset that loaders, models and metrics need.

    Attributes:
        name: registry name (``kitti_step``, ``motchallenge_step``, ``kitti_panoptic``, ``mots``).
        class_names: semantic class names, index = class id.
        thing_ids: ids of the classes that have instances (tracked in STEP).
        ignore_label: the void label of semantic maps.
        label_divisor: panoptic id = semantic * label_divisor + instance.
        layout: the on-disk layout family (see ``data/README.md``).
        splits: split name -> where it lives.
        colors: an RGB colour per class (Cityscapes palette) for visualisation.
        image_size: the official (height, width), informational.
        fps: frames per second of the videos (0 for single images).
        mots_class_ids: for MOTS txt, semantic class id -> MOTS class id (1 car, 2 pedestrian).
    """

    name: str
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    ignore_label: int
    label_divisor: int
    layout: Layout
    splits: Mapping[str, SplitSpec]
    colors: tuple[tuple[int, int, int], ...]
    image_size: tuple[int, int]
    fps: float
    mots_class_ids: Mapping[int, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of semantic classes (void excluded)."""
        return len(self.class_names)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        """Ids of the classes that are not things."""
        return tuple(i for i in range(self.num_classes) if i not in self.thing_ids)

    def class_id(self, name: str) -> int:
        """Return the id of a class given its name.

        Raises:
            HVPSError: if the dataset has no class of that name.
        """
        try:
            return self.class_names.index(name)
        except ValueError:
            raise HVPSError(
                f"dataset {self.name!r} has no class {name!r}; classes: {', '.join(self.class_names)}"
            ) from None

    def split(self, name: str) -> SplitSpec:
        """Return the split spec of ``name``.

        Raises:
            HVPSError: if the split is unknown.
        """
        try:
            return self.splits[name]
        except KeyError:
            raise HVPSError(
                f"dataset {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}"
            ) from None


_KITTI_STEP_TRAIN = ("0000", "0001", "0003", "0004", "0005", "0009", "0011", "0012", "0015",
                     "0017", "0019", "0020")  # fmt: skip
_KITTI_STEP_VAL = ("0002", "0006", "0007", "0008", "0010", "0013", "0014", "0016", "0018")
_KITTI_STEP_TEST = tuple(f"{i:04d}" for i in range(29))


# Frames per sequence of the KITTI tracking training set (KITTI-STEP and KITTI-MOTS use its 21
# sequences): the KITTI tracking devkit's evaluate_tracking.seqmap, the same numbers as the
# KITTI-MOTS val seqmap (TrackEval's data/gt/kitti/kitti_mots_val/evaluate_mots.seqmap.val);
# they sum to deeplab2's KITTI-STEP sizes (data/dataset.py @ 64bc1c1a: train 5027, val 2981).
_KITTI_TRACKING_FRAMES: dict[str, int] = {
    "0000": 154, "0001": 447, "0002": 233, "0003": 144, "0004": 314, "0005": 297, "0006": 270,
    "0007": 800, "0008": 390, "0009": 803, "0010": 294, "0011": 373, "0012": 78, "0013": 340,
    "0014": 106, "0015": 376, "0016": 209, "0017": 145, "0018": 339, "0019": 1059, "0020": 837,
}  # fmt: skip


def _frames_of(sequences: tuple[str, ...]) -> dict[str, int]:
    return {name: _KITTI_TRACKING_FRAMES[name] for name in sequences}


KITTI_STEP = DatasetSpec(
    name="kitti_step",
    class_names=CITYSCAPES_CLASSES,
    thing_ids=(11, 13),
    ignore_label=255,
    label_divisor=1000,
    layout="step",
    splits={
        "train": SplitSpec("train", _KITTI_STEP_TRAIN, frames=_frames_of(_KITTI_STEP_TRAIN)),
        "val": SplitSpec("val", _KITTI_STEP_VAL, frames=_frames_of(_KITTI_STEP_VAL)),
        # 11,095 frames in all (deeplab2 data/dataset.py); per-sequence lengths not recorded here
        "test": SplitSpec("test", _KITTI_STEP_TEST, has_labels=False),
    },
    colors=CITYSCAPES_COLORS,
    image_size=(375, 1242),
    fps=10.0,
    mots_class_ids={13: 1, 11: 2},
)

MOTCHALLENGE_STEP_CLASSES = ("sidewalk", "building", "vegetation", "sky", "person", "rider",
                             "bicycle")  # fmt: skip

MOTCHALLENGE_STEP = DatasetSpec(
    name="motchallenge_step",
    class_names=MOTCHALLENGE_STEP_CLASSES,
    thing_ids=(4,),
    ignore_label=255,
    label_divisor=1000,
    layout="step",
    # The reference setup trains on 0009 and validates on 0002; both sit in train/. Lengths:
    # motchallenge.net/data/STEP-ICCV21 (02: 600, 09: 525, 01: 450, 07: 500) and deeplab2's
    # data/dataset.py (train 525 = sequence 9, val 600 = sequence 2).
    splits={
        "train": SplitSpec("train", ("0009",), frames={"0009": 525, "0002": 600}),
        "val": SplitSpec("train", ("0002",), frames={"0009": 525, "0002": 600}),
        "test": SplitSpec("test", ("0001", "0007"), has_labels=False, frames={"0001": 450, "0007": 500}),
    },
    colors=tuple(CITYSCAPES_COLORS[CITYSCAPES_CLASSES.index(c)] for c in MOTCHALLENGE_STEP_CLASSES),
    image_size=(1080, 1920),
    fps=30.0,
    mots_class_ids={4: 2},
)

KITTI_PANOPTIC = DatasetSpec(
    name="kitti_panoptic",
    class_names=CITYSCAPES_CLASSES,
    # Cityscapes panoptic things; STEP tracks only person and car, but stage 1 is panoptic.
    thing_ids=(11, 12, 13, 14, 15, 16, 17, 18),
    ignore_label=255,
    label_divisor=1000,
    layout="coco_panoptic",
    # Image counts of the EfficientPS release (Mohan & Valada, IJCV 2021, "KITTI panoptic
    # segmentation dataset"): 1,055 training and 200 validation images, as that paper gives them;
    # `hvps plan` counts the images of a root that is present instead.
    splits={"train": SplitSpec("training", images=1055), "val": SplitSpec("validation", images=200)},
    colors=CITYSCAPES_COLORS,
    image_size=(375, 1242),
    fps=0.0,
    mots_class_ids={13: 1, 11: 2},
)

MOTS_CLASSES = ("background", "car", "pedestrian")

MOTS = DatasetSpec(
    name="mots",
    class_names=MOTS_CLASSES,
    thing_ids=(1, 2),
    ignore_label=10,
    label_divisor=1000,
    layout="mots",
    # MOTS20 is MOT17's footage (MOTS20-XX = MOT17-XX); lengths are MOT17's (train: 2,862 frames
    # in all, as the MOTS paper, Voigtlaender et al. CVPR 2019, gives for MOTSChallenge).
    splits={
        "train": SplitSpec("train", ("MOTS20-02", "MOTS20-05", "MOTS20-09", "MOTS20-11"),
                           frames={"MOTS20-02": 600, "MOTS20-05": 837, "MOTS20-09": 525, "MOTS20-11": 900}),
        "test": SplitSpec("test", ("MOTS20-01", "MOTS20-06", "MOTS20-07", "MOTS20-12"), has_labels=False,
                          frames={"MOTS20-01": 450, "MOTS20-06": 1194, "MOTS20-07": 500, "MOTS20-12": 900}),
    },
    colors=((0, 0, 0), (0, 0, 142), (220, 20, 60)),
    image_size=(1080, 1920),
    fps=30.0,
    mots_class_ids={1: 1, 2: 2},
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (KITTI_STEP, MOTCHALLENGE_STEP, KITTI_PANOPTIC, MOTS)}

#: Finetuning stages of the HVPS recipe, in order, and the dataset each one trains on.
STAGES: dict[str, str] = {
    "kitti_panoptic": "kitti_panoptic",
    "kitti_step": "kitti_step",
    "mot_step": "motchallenge_step",
}

# Target class -> source classes it is made of. Cityscapes-19 is the label space of KITTI
# panoptic and KITTI-STEP; MOTChallenge-STEP merges road->sidewalk, terrain->vegetation and
# drops car, fence, pole, traffic light, motorcycle (and the rest) to void.
_CITYSCAPES_TO_MOTCHALLENGE: dict[int, tuple[int, ...]] = {
    0: (0, 1),  # sidewalk <- road, sidewalk
    1: (2,),  # building
    2: (8, 9),  # vegetation <- vegetation, terrain
    3: (10,),  # sky
    4: (11,),  # person
    5: (12,),  # rider
    6: (18,),  # bicycle
}
_IDENTITY_19: dict[int, tuple[int, ...]] = {i: (i,) for i in range(19)}

_CLASS_MAPS: dict[tuple[str, str], dict[int, tuple[int, ...]]] = {
    ("kitti_panoptic", "kitti_step"): _IDENTITY_19,
    ("kitti_panoptic", "motchallenge_step"): _CITYSCAPES_TO_MOTCHALLENGE,
    ("kitti_step", "motchallenge_step"): _CITYSCAPES_TO_MOTCHALLENGE,
    ("mots", "motchallenge_step"): {4: (2,)},
    ("mots", "kitti_step"): {11: (2,), 13: (1,)},
}


def footage(dataset: str | DatasetSpec, split_folder: str, sequence: str) -> str | None:
    """The recording a sequence of a dataset shows, so that two datasets' copies compare equal.

    MOTChallenge-STEP ``0002`` and MOTS20 ``MOTS20-02`` are both MOT17-02 (the STEP sequences are
    the MOTS20 sequences of the same number, see deeplab2's g3doc/setup/motchallenge_step.md);
    KITTI-STEP and KITTI-MOTS sequences are the KITTI tracking sequences of the same number, of
    its training or testing set. KITTI panoptic images are single images: ``None`` (unknown).

    Example:
        >>> footage("motchallenge_step", "train", "0002") == footage("mots", "train", "MOTS20-02")
        True
    """
    spec = get_spec(dataset)
    if spec.name == "motchallenge_step" or sequence.startswith("MOTS20-"):
        return f"MOT17-{sequence[-2:]}"
    if spec.name in ("kitti_step", "mots"):
        part = "testing" if split_folder in ("test", "testing") else "training"
        return f"KITTI-tracking-{part}-{sequence}"
    return None


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """Return the spec registered under ``name`` (a spec passes through).

    Raises:
        HVPSError: if no dataset of that name is known.
    """
    if isinstance(name, DatasetSpec):
        return name
    try:
        return SPECS[name]
    except KeyError:
        raise HVPSError(f"unknown dataset {name!r}; known: {', '.join(SPECS)}") from None


def stage_spec(stage: str) -> DatasetSpec:
    """Return the dataset spec of a finetuning stage (``kitti_panoptic``, ``kitti_step``, ``mot_step``).

    Raises:
        HVPSError: if the stage is unknown.
    """
    if stage not in STAGES:
        raise HVPSError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return SPECS[STAGES[stage]]


def class_map(source: str, target: str) -> dict[int, tuple[int, ...]]:
    """Map each target class id to the source class ids it is made of.

    Target classes missing from the map have no source (they start fresh in finetuning).

    Raises:
        HVPSError: if no map between the two datasets is known.
    """
    source, target = get_spec(source).name, get_spec(target).name
    if source == target:
        return {i: (i,) for i in range(get_spec(source).num_classes)}
    try:
        return dict(_CLASS_MAPS[(source, target)])
    except KeyError:
        raise HVPSError(f"no class map from {source!r} to {target!r}") from None


def label_lut(source: str, target: str) -> list[int]:
    """Return a lookup table converting source semantic ids to target ids (void where unmapped).

    The table has 256 entries so it can index uint8 maps directly; the ignore label maps to
    the target's ignore label.
    """
    src, dst = get_spec(source), get_spec(target)
    lut = [dst.ignore_label] * 256
    for tgt_id, src_ids in class_map(src.name, dst.name).items():
        for s in src_ids:
            lut[s] = tgt_id
    return lut
