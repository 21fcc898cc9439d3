"""Panoptic fusion: a semantic map and tracked instance masks -> STEP panoptic (semantic, instance).

Instances are painted onto the semantic map in order of score, so where masks overlap the
highest score wins (ties: the one listed first). Their pixels take the instance's thing class
and its track id. Pixels that the semantic map labels with a thing class but that no instance
covers follow the ``uncovered`` rule:

* ``"crowd"`` (default): keep the thing class with instance 0 (STEP's crowd/"thing without
  identity"). Chosen by measured STQ on generated data (``benchmarks/fusion_rules.py``,
  MOTChallenge-STEP preset, 2 x 12 frames at 180x320, simulated semantic and tracking errors
  from mild to hard): mean STQ crowd 0.336, stuff 0.282, void 0.266, and crowd is best in
  every scenario (mild 0.495 / 0.461 / 0.435; also with another seed and 2 x 20 frames). It
  keeps the semantic model's thing pixels for the IoU half of STQ, and AQ rises too: STQ
  gives the instance-0 segment partial credit for each ground-truth tube it overlaps and
  does not penalise extra predicted segments.
* ``"void"``: the ignore label (255). STQ counts a void prediction on valid ground truth as one
  more class with IoU 0, so this rule costs IoU wherever the semantic model saw a thing.
* ``"stuff"``: the best stuff class. With ``stuff_probabilities`` (the model's (C, H, W) class
  probabilities) it is the most probable stuff class at each pixel; without them, the class
  of the nearest stuff pixel (Euclidean distance transform), i.e. the surrounding background
  extended into the hole. If the frame has no stuff pixel at all, the pixels become void.

Instance masks may be pycocotools RLEs ``{"size": [H, W], "counts": str}`` or boolean arrays.
Instances may be given as the tracker's ``TrackedObject(track_id, label, score, box, rle)``, any
object with ``track_id``, ``label``, ``score`` and ``rle`` or ``mask`` attributes,
:class:`PanopticInstance`, or plain tuples ``(track_id, label, score, mask)`` /
``(track_id, label, score, box, mask)``.

Example:
    >>> import numpy as np
    >>> from hvps_lightning.structures.specs import get_spec
    >>> spec = get_spec("motchallenge_step")
    >>> semantic = np.array([[0, 4, 4, 4]])
    >>> mask = np.array([[False, True, True, False]])
    >>> s, i = fuse_panoptic(semantic, [(7, 4, 0.9, mask)], spec, uncovered="void")
    >>> s.tolist(), i.tolist()
    ([[0, 4, 4, 255]], [[0, 7, 7, 0]])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.masks import decode_mask_window
from hvps_lightning.structures.panoptic import PanopticFrame
from hvps_lightning.structures.specs import DatasetSpec, get_spec

UncoveredRule = Literal["void", "stuff", "crowd"]
UNCOVERED_RULES: tuple[str, ...] = ("void", "stuff", "crowd")
#: picked by STQ on generated data, see the module docstring and benchmarks/fusion_rules.py
DEFAULT_UNCOVERED: UncoveredRule = "crowd"


@dataclass(frozen=True)
class PanopticInstance:
    """One tracked instance of a frame, as the fusion needs it.

    Attributes:
        track_id: the instance id within the sequence, 0 < track_id < label divisor.
        label: the spec's semantic class id of a thing class.
        score: confidence; higher scores win overlaps.
        mask: a pycocotools RLE dict or a boolean (H, W) array.
    """

    track_id: int
    label: int
    score: float
    mask: Any


def as_panoptic_instance(obj: Any) -> PanopticInstance:
    """Convert a tracker object, a dataclass or a tuple into a :class:`PanopticInstance`.

    Raises:
        HVPSError: if the object has none of the accepted shapes.
    """
    if isinstance(obj, PanopticInstance):
        return obj
    if hasattr(obj, "track_id") and hasattr(obj, "label") and hasattr(obj, "score"):
        mask = getattr(obj, "rle", None)
        if mask is None:
            mask = getattr(obj, "mask", None)
        if mask is None:
            raise HVPSError(f"instance {obj.track_id}: has neither an 'rle' nor a 'mask'")
        return PanopticInstance(int(obj.track_id), int(obj.label), float(obj.score), mask)
    if isinstance(obj, (tuple, list)) and len(obj) in (4, 5):
        track_id, label, score = obj[:3]
        return PanopticInstance(int(track_id), int(label), float(score), obj[-1])
    raise HVPSError(
        f"cannot read an instance from a {type(obj).__name__}: expected a TrackedObject, "
        "a PanopticInstance or a tuple (track_id, label, score[, box], mask)"
    )


Window = tuple[slice, slice]


def _mask_window(mask: Any, shape: tuple[int, ...], where: str) -> tuple[Window, np.ndarray] | None:
    """Return the mask's bounding box and the boolean mask inside it (``None`` if empty).

    Painting inside the box keeps the cost per instance proportional to its size.
    """
    if isinstance(mask, dict):
        size = tuple(int(v) for v in mask.get("size", ()))
        if size != shape:
            raise HVPSError(f"{where}: mask of size {size} differs from the semantic map {shape}")
        return decode_mask_window(mask)
    array = np.asarray(mask)
    if array.shape != shape:
        raise HVPSError(f"{where}: mask of size {tuple(array.shape)} differs from the semantic map {shape}")
    array = array.astype(bool, copy=False)
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        return None
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return window, array[window]


def _check_instances(instances: list[PanopticInstance], spec: DatasetSpec, where: str) -> None:
    seen: set[tuple[int, int]] = set()
    for inst in instances:
        if not 0 < inst.track_id < spec.label_divisor:
            raise HVPSError(
                f"{where}: track id {inst.track_id} must lie in 1..{spec.label_divisor - 1} "
                f"(panoptic id = class * {spec.label_divisor} + track id)"
            )
        if inst.label not in spec.thing_ids:
            names = ", ".join(f"{i} {spec.class_names[i]}" for i in spec.thing_ids)
            raise HVPSError(
                f"{where}: instance {inst.track_id} has class {inst.label}, not a thing class "
                f"of {spec.name} ({names})"
            )
        if (inst.label, inst.track_id) in seen:
            raise HVPSError(
                f"{where}: track id {inst.track_id} of class {inst.label} appears twice in one frame"
            )
        seen.add((inst.label, inst.track_id))


def fuse_panoptic(
    semantic: np.ndarray,
    instances: Iterable[Any],
    spec: DatasetSpec | str,
    uncovered: UncoveredRule = DEFAULT_UNCOVERED,
    stuff_probabilities: np.ndarray | None = None,
    where: str = "fusion",
) -> PanopticFrame:
    """Fuse a semantic map and a frame's tracked instances into STEP ``(semantic, instance)`` maps.

    Args:
        semantic: (H, W) class ids of the spec (the ignore label allowed).
        instances: the frame's tracked instances (see the module docstring for accepted forms).
        spec: the dataset spec (or its name): thing classes, ignore label, label divisor.
        uncovered: what thing pixels of the semantic map without an instance become:
            ``"crowd"``, ``"void"`` or ``"stuff"`` (see the module docstring).
        stuff_probabilities: optional (C, H, W) class probabilities for the ``"stuff"`` rule.
        where: a prefix for error messages (e.g. ``"0002/000010"``).

    Returns:
        The fused frame (int32 (H, W) ``semantic`` and ``instance`` maps; it unpacks as the pair).

    Raises:
        HVPSError: on a track id outside 1..label_divisor-1, an instance of a non-thing class, a
            repeated track id, a mask of another size, class ids unknown to the spec, or an
            unknown rule.
    """
    spec = get_spec(spec)
    if uncovered not in UNCOVERED_RULES:
        raise HVPSError(f"uncovered: unknown rule {uncovered!r}; choose one of {', '.join(UNCOVERED_RULES)}")
    semantic = np.asarray(semantic)
    if semantic.ndim != 2:
        raise HVPSError(f"{where}: a semantic map is (H, W), got shape {semantic.shape}")
    fused = semantic.astype(np.int32, copy=True)
    valid = (fused >= 0) & ((fused < spec.num_classes) | (fused == spec.ignore_label))
    if not valid.all():
        bad = np.unique(fused[~valid])[:5].tolist()
        raise HVPSError(
            f"{where}: semantic map holds class ids {bad} unknown to {spec.name} "
            f"(0..{spec.num_classes - 1} and {spec.ignore_label})"
        )
    instance = np.zeros_like(fused)
    objects = [as_panoptic_instance(obj) for obj in instances]
    _check_instances(objects, spec, where)

    covered = np.zeros(fused.shape, dtype=bool)
    # highest score first, each instance takes only pixels no better instance took; stable for ties
    for index in sorted(range(len(objects)), key=lambda i: -objects[i].score):
        obj = objects[index]
        found = _mask_window(obj.mask, fused.shape, f"{where}: instance {obj.track_id}")
        if found is None:
            continue
        window, mask = found
        pixels = mask & ~covered[window]
        fused[window][pixels] = obj.label
        instance[window][pixels] = obj.track_id
        covered[window] |= pixels

    holes = np.isin(fused, spec.thing_ids) & ~covered
    if uncovered == "void":
        fused[holes] = spec.ignore_label
    elif uncovered == "stuff" and holes.any():
        fused[holes] = _best_stuff(fused, holes, covered, spec, stuff_probabilities, where)
    return PanopticFrame(fused, instance)


def _best_stuff(
    fused: np.ndarray,
    holes: np.ndarray,
    covered: np.ndarray,
    spec: DatasetSpec,
    probabilities: np.ndarray | None,
    where: str,
) -> np.ndarray:
    """Return the stuff class for each hole pixel (flattened in ``fused[holes]`` order)."""
    stuff_ids = np.asarray(spec.stuff_ids, dtype=np.int32)
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.shape != (spec.num_classes, *fused.shape):
            raise HVPSError(
                f"{where}: stuff probabilities have shape {probabilities.shape}, expected "
                f"{(spec.num_classes, *fused.shape)}"
            )
        best = np.argmax(probabilities[stuff_ids][:, holes], axis=0)
        return stuff_ids[best]
    stuff = np.isin(fused, stuff_ids) & ~covered
    if not stuff.any():
        return np.full(int(holes.sum()), spec.ignore_label, dtype=np.int32)
    # for every pixel, the coordinates of the nearest stuff pixel
    _, (rows, cols) = ndimage.distance_transform_edt(~stuff, return_indices=True)
    return fused[rows[holes], cols[holes]]
