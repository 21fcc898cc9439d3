"""Dataset layouts: walk a root in its official layout and pair every frame with its files.

:func:`scan_root` finds the sequences and frames of a root (STEP, COCO panoptic, MOTS20,
KITTI-MOTS; see ``data/README.md``) without reading them: it only checks which files exist
and pairs them (image, panoptic map, COCO annotation, MOTS txt), listing a
:class:`Problem` per missing or stray file. Reading and checking the files is
:mod:`hvps_lightning.data.loaders`' job.

Layouts (``hvps data check --dataset``):

- ``kitti_step``, ``motchallenge_step``: ``images/<split>/<seq>/<frame>.png`` and
  ``panoptic_maps/<split>/<seq>/<frame>.png``; optional MOTS txt ground truth
  ``instances_txt/<split>/<seq>.txt`` (written by ``hvps synth``).
- ``kitti_panoptic``: COCO panoptic (the KITTI panoptic release of EfficientPS):
  ``<split>/images/<name>.png``, ``<split>/annotations/<name>.png``,
  ``<split>/annotations.json`` for ``training`` and ``validation``.
- ``mots``: MOTS20 (``train/MOTS20-02/img1/000001.jpg``, ``gt/gt.txt``, ``seqinfo.ini``) or
  KITTI-MOTS (``training/image_02/0000/000000.png``, ``instances_txt/0000.txt``).

Example:
    >>> scan = scan_root("kitti_step", "/nonexistent")
    >>> [str(p) for p in scan.problems]
    ['/nonexistent: dataset root not found']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from hvps_lightning.data.layout.base import (
    IMAGE_SUFFIXES,
    FrameFiles,
    LayoutScan,
    Problem,
    SequenceFiles,
    split_folders,
)
from hvps_lightning.data.layout.coco import scan_coco
from hvps_lightning.data.layout.mots import KITTI_MOTS_SPLITS, mots_layout, scan_kitti_mots, scan_mots20
from hvps_lightning.data.layout.step import scan_step
from hvps_lightning.structures.specs import DatasetSpec, SplitSpec, get_spec

__all__: list[str] = [
    "IMAGE_SUFFIXES",
    "KITTI_MOTS_SPLITS",
    "FrameFiles",
    "LayoutScan",
    "Problem",
    "SequenceFiles",
    "layout_splits",
    "mots_layout",
    "scan_root",
]


def layout_splits(spec: DatasetSpec | str, root: str | Path) -> Mapping[str, SplitSpec]:
    """The splits of the layout found at ``root`` (KITTI-MOTS has its own; otherwise the spec's)."""
    spec = get_spec(spec)
    if spec.layout == "mots" and mots_layout(Path(root)) == "kitti_mots":
        return KITTI_MOTS_SPLITS
    return spec.splits


def scan_root(spec: DatasetSpec | str, root: str | Path, folders: Iterable[str] | None = None) -> LayoutScan:
    """Walk ``root`` with the layout of ``spec``: find sequences and frames, pair files, list problems.

    Only cheap checks run here (which files exist); reading the files is the job of
    :mod:`hvps_lightning.data.loaders`.

    Args:
        spec: the dataset spec (or its name).
        root: the dataset root.
        folders: restrict the walk to these split folders (default: every folder of the spec).
    """
    spec, root = get_spec(spec), Path(root)
    if not root.is_dir():
        scan = LayoutScan(spec.layout, spec.splits)
        what = "dataset root not found" if not root.exists() else "dataset root is not a folder"
        scan.problems.append(Problem(root, what))
        return scan
    if spec.layout == "step":
        return scan_step(spec, root, folders)
    if spec.layout == "coco_panoptic":
        return scan_coco(spec, root, folders)
    if mots_layout(root) == "kitti_mots":
        return scan_kitti_mots(root, folders)
    scan = scan_mots20(spec, root, folders)
    if (
        not scan.sequences
        and not scan.problems
        and not any((root / f).is_dir() for f in split_folders(spec.splits))
    ):
        scan.problems.append(
            Problem(
                root,
                "wrong layout: expected MOTS20 (train/MOTS20-XX/img1/, gt/gt.txt) or KITTI-MOTS "
                "(training/image_02/<seq>/, instances_txt/<seq>.txt)",
            )
        )
    return scan

