"""Ground truth for the offline tracker evaluation, read from the datamodule's dataset.

The offline tracker callback scores tracks against the original-resolution ground truth of
the frames it saw: a ``ClipDataset`` (``HVPSDataModule.dataset(role)``) knows every sequence's
files and layout, so :class:`GroundTruthSource` reads a frame's labels with the same loader
and checks as training (``data.loaders.load_frame``), converts them into the label space of
the model's spec, and returns STEP ``(semantic, instance)`` maps. Without such a dataset the
STEP layout is derived from the frame's image path (``images/`` -> ``panoptic_maps/``).

:func:`panoptic_to_mots` turns such maps into MOTS objects (things with an id; crowd, i.e.
thing pixels with instance 0, become the ignore region) for the MOTS metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.data.formats import IGNORE_CLASS, IGNORE_ID, MOTSObject, mask_to_rle, read_step_png
from hvps_lightning.data.specs import DatasetSpec, get_spec, label_lut
from hvps_lightning.errors import HVPSError


class GroundTruthSource:
    """Reads ground-truth STEP maps of (sequence, frame) pairs in the label space of ``spec``.

    Args:
        spec: the label space the maps are returned in (the model's spec).
        dataset: a ``ClipDataset`` (or anything with ``sequences``, ``source_spec``), or ``None``.
        image_paths: (sequence, frame) -> image path, for the fallback without a dataset.
    """

    def __init__(
        self,
        spec: DatasetSpec | str,
        dataset: Any | None = None,
        image_paths: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.spec = get_spec(spec)
        self.dataset = dataset
        self.image_paths = dict(image_paths or {})
        self._sequences: dict[str, Any] = {}
        self._mots: dict[str, Any] = {}
        self._lut: np.ndarray | None = None
        if dataset is not None and hasattr(dataset, "sequences"):
            self._sequences = {seq.name: seq for seq in dataset.sequences}
            source = get_spec(getattr(dataset, "source_spec", self.spec))
            self.source_spec = source
            if source.name != self.spec.name:
                self._lut = np.asarray(label_lut(source.name, self.spec.name), np.int32)
        else:
            self.source_spec = self.spec

    def available(self, sequence: str) -> bool:
        """Whether ground truth can be read for ``sequence``."""
        if sequence in self._sequences:
            return bool(self._sequences[sequence].labelled)
        return any(seq == sequence for seq, _ in self.image_paths)

    def frame(self, sequence: str, frame: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the ``(semantic, instance)`` int32 maps of a frame, or ``None`` if it has no labels.

        Raises:
            HVPSError: from the readers, naming the file, when a label file is bad.
        """
        if sequence in self._sequences:
            return self._from_dataset(sequence, frame)
        image = self.image_paths.get((sequence, frame))
        if image is None:
            return None
        return self._from_image_path(Path(image))

    def _from_dataset(self, sequence: str, frame: str) -> tuple[np.ndarray, np.ndarray] | None:
        from hvps_lightning.data.loaders import load_frame, load_sequence_mots

        seq = self._sequences[sequence]
        files = next((f for f in seq.frames if f.stem == frame), None)
        if files is None or not seq.labelled:
            return None
        if self.source_spec.layout == "mots" and sequence not in self._mots:
            self._mots[sequence] = load_sequence_mots(seq)
        loaded = load_frame(self.source_spec, seq, files, self._mots.get(sequence))
        if loaded.semantic is None or loaded.instance is None:
            return None
        return self._convert(loaded.semantic, loaded.instance)

    def _from_image_path(self, image: Path) -> tuple[np.ndarray, np.ndarray] | None:
        parts = list(image.parts)
        if "images" not in parts:
            return None
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "panoptic_maps"
        label = Path(*parts).with_suffix(".png")
        if not label.is_file():
            return None
        semantic, instance = read_step_png(label)
        return self._convert(semantic, instance)

    def _convert(self, semantic: np.ndarray, instance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        semantic = np.asarray(semantic, np.int32)
        if self._lut is not None:
            semantic = self._lut[np.clip(semantic, 0, 255)]
        things = np.isin(semantic, self.spec.thing_ids)
        instance = np.where(things, np.asarray(instance, np.int32), 0).astype(np.int32)
        return semantic, instance


def panoptic_to_mots(
    semantic: np.ndarray, instance: np.ndarray, spec: DatasetSpec | str, frame: int
) -> list[MOTSObject]:
    """MOTS objects of one ground-truth frame: one per (thing class, instance id), plus crowd as ignore.

    Ids are ``MOTS class * 1000 + instance``; thing pixels with instance 0 (crowd) of classes
    with a MOTS class form one ignore region (id 10000, class 10).

    Raises:
        HVPSError: if an instance id does not fit below 1000.
    """
    spec = get_spec(spec)
    objects: list[MOTSObject] = []
    crowd = np.zeros(semantic.shape, bool)
    for label, mots_class in sorted(spec.mots_class_ids.items()):
        of_class = semantic == label
        if not of_class.any():
            continue
        crowd |= of_class & (instance == 0)
        for track_id in np.unique(instance[of_class & (instance > 0)]).tolist():
            if track_id >= 1000:
                raise HVPSError(f"frame {frame}: ground-truth instance id {track_id} does not fit MOTS ids")
            mask = of_class & (instance == track_id)
            objects.append(
                MOTSObject(frame, mots_class * 1000 + int(track_id), mots_class, mask_to_rle(mask))
            )
    if crowd.any():
        objects.append(MOTSObject(frame, IGNORE_ID, IGNORE_CLASS, mask_to_rle(crowd)))
    return objects
