"""MOTS metrics (sMOTSA, MOTSA, MOTSP, IDF1, HOTA) as the official MOTSChallenge evaluation.

The semantics are TrackEval's (MOTSChallenge dataset, CLEAR, Identity and HOTA metrics), on
MOTS txt data (docs/ARCHITECTURE.md "Metrics, exactly").

Per sequence and frame:

1. Only objects of the evaluated class (``class_id``, pedestrians = 2) take part; ground-truth
   lines of the ignore class (id 10000, class 10) form one ignore region per frame.
2. Predictions are matched to ground truth on mask IoU (>= 0.5; Hungarian); a prediction left
   unmatched with more than half of its own area inside the ignore region is removed before
   any metric sees it.
3. CLEAR: matches need IoU >= 0.5 and prefer, above any IoU, the prediction id that was
   matched to the same ground-truth id in the previous frame (so of two predictions that tie,
   the previous match is kept; as in TrackEval, a frame without ground truth or without
   predictions does not count as a previous frame); an identity switch is a match to another
   prediction id than the last one the ground-truth id was matched to (any number of frames
   before).
   sMOTSA = (sum of TP IoUs - FP - IDSW) / GT, MOTSA = (TP - FP - IDSW) / GT, MOTSP = mean TP IoU.
4. IDF1: the global one-to-one assignment of ground-truth ids to prediction ids maximising
   the frames in which they overlap with IoU >= 0.5.
5. HOTA: TrackEval's definition, averaged over the localisation thresholds alpha = 0.05 ... 0.95.

Combined numbers come from counts summed over sequences (TrackEval ``combine_sequences``);
a sequence without ground-truth objects reports MOTSA = sMOTSA = MOTSP = IDF1 = HOTA = 0 on
its own (TrackEval returns early there) while its false positives still count in the
combined numbers.

All of TrackEval's fields are computed (:meth:`MOTSCounts.fields`: CLEAR with MT/PT/ML and Frag,
Identity, HOTA per alpha with LocA, AssRe, AssPr, and Count), so the TrackEval-shaped result
files (:mod:`hvps_lightning.formats.trackeval_results`) are written from the same numbers.
A sequence's number of frames (``CLR_Frames``, ``FP_per_frame``) is its length in
``seqinfo.ini`` or a seqmap when the caller knows it (``lengths``), else the frames its files span.

Libraries: mask IoUs come from pycocotools (``mask.iou`` on the RLEs, no decoding); every
assignment (CLEAR, Identity, HOTA) is scipy's ``linear_sum_assignment``. The CLEAR matching is
written here because the one general library for it, motmetrics, re-establishes the
*last-ever* match of a ground-truth id before its Hungarian step, whereas TrackEval (and
docs/ARCHITECTURE.md) prefer only the match of the previous frame; the two differ on ties after a
frame in which the ground truth went unmatched. The identity assignment (IDF1) is one call of
``linear_sum_assignment`` on the frame counts (see :func:`identity_counts`).

Example:
    >>> import numpy as np
    >>> from hvps_lightning.formats.mots_txt import MOTSObject, encode_mask
    >>> mask = np.zeros((4, 4), np.uint8); mask[:2, :2] = 1
    >>> gt = {"s": [MOTSObject(1, 2001, 2, encode_mask(mask))]}
    >>> result = evaluate_mots(gt, gt)
    >>> result["combined"]["sMOTSA"], result["combined"]["IDF1"], result["combined"]["TP"]
    (1.0, 1.0, 1)
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.mots_txt import PEDESTRIAN_CLASS, MOTSObject, check_no_overlap
from hvps_lightning.structures.masks import mask_iou, merge_masks

#: a match needs IoU >= MATCH_THRESHOLD (0.5 itself matches).
MATCH_THRESHOLD = 0.5
#: HOTA localisation thresholds (TrackEval: np.arange(0.05, 0.99, 0.05)).
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps
#: keys of every metrics dict, in output order.
MOTS_METRIC_KEYS = ("sMOTSA", "MOTSA", "MOTSP", "IDF1", "TP", "FP", "FN", "IDSW", "HOTA", "DetA", "AssA")


@dataclass
class SequenceMatches:
    """One sequence after preprocessing: per frame the ids and the IoU matrix.

    Attributes:
        gt_ids: per frame, contiguous ground-truth ids (0 .. num_gt_ids - 1).
        pred_ids: per frame, contiguous prediction ids.
        similarity: per frame, (len(gt_ids), len(pred_ids)) mask IoU.
        num_gt_ids: distinct ground-truth ids.
        num_pred_ids: distinct prediction ids.
        num_frames: the sequence's length in frames (TrackEval's timesteps; frames without
            any object count too).
    """

    gt_ids: list[np.ndarray] = field(default_factory=list)
    pred_ids: list[np.ndarray] = field(default_factory=list)
    similarity: list[np.ndarray] = field(default_factory=list)
    num_gt_ids: int = 0
    num_pred_ids: int = 0
    num_frames: int = 0

    @property
    def num_gt_dets(self) -> int:
        """Ground-truth masks over all frames."""
        return int(sum(ids.size for ids in self.gt_ids))

    @property
    def num_pred_dets(self) -> int:
        """Predicted masks over all frames (after the ignore-region removal)."""
        return int(sum(ids.size for ids in self.pred_ids))


@dataclass
class MOTSCounts:
    """Summable statistics of one or more sequences: TrackEval's CLEAR, Identity, HOTA and Count.

    Everything TrackEval sums when it combines sequences is a field here, so ``a + b`` combines
    two sets of sequences exactly as ``combine_sequences`` does, and :meth:`fields` turns the
    sums into TrackEval's numbers (``MOTA``, ``IDF1``, ``HOTA`` per alpha, ...). The HOTA arrays
    have one entry per alpha of :data:`HOTA_ALPHAS`; the ``*_weighted`` arrays hold AssA, AssRe,
    AssPr and LocA multiplied by HOTA_TP (TrackEval's weighted averages over sequences).

    ``early`` marks a single sequence that TrackEval scores with its early return (no
    ground-truth or no predicted masks): its ratios are reported as 0 (``MLR`` as 1) on their
    own, while its counts still add up in combinations. A sum is never early.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    idsw: int = 0
    motp_sum: float = 0.0
    mt: int = 0
    pt: int = 0
    ml: int = 0
    frag: int = 0
    frames: int = 0
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0
    hota_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_assa_weighted: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_assre_weighted: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_asspr_weighted: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_loca_weighted: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    dets: int = 0
    gt_dets: int = 0
    ids: int = 0
    gt_ids: int = 0
    early: bool = False

    def __add__(self, other: MOTSCounts) -> MOTSCounts:
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "early"
        }
        return MOTSCounts(**summed)

    def to_vector(self) -> np.ndarray:
        """The summable fields as one float vector (:func:`metric_from_vectors` reads it back).

        Sums of vectors are the vectors of sums, so resampling statistics (a block bootstrap)
        can add sequences or blocks as arrays.
        """
        parts = [np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64)) for name in _VECTOR_FIELDS]
        return np.concatenate(parts)

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> MOTSCounts:
        """The counts of a vector of :meth:`to_vector` (integer fields rounded)."""
        values, offset = {}, 0
        for name in _VECTOR_FIELDS:
            size = len(HOTA_ALPHAS) if name.startswith("hota_") else 1
            chunk = np.asarray(vector[offset : offset + size], dtype=np.float64)
            offset += size
            if size > 1:
                values[name] = chunk.copy()
            elif name == "motp_sum":
                values[name] = float(chunk[0])
            else:
                values[name] = round(float(chunk[0]))
        return cls(**values)

    def fields(self) -> dict[str, dict[str, Any]]:
        """TrackEval's fields per metric family (``HOTA``, ``CLEAR``, ``Identity``, ``Count``).

        Floats and arrays as TrackEval computes them (fractions, per-alpha arrays for HOTA);
        these are what ``<class>_summary.txt`` and ``<class>_detailed.csv`` hold.
        """
        return {
            "HOTA": self._hota_fields(),
            "CLEAR": self._clear_fields(),
            "Identity": self._identity_fields(),
            "Count": {"Dets": self.dets, "GT_Dets": self.gt_dets, "IDs": self.ids, "GT_IDs": self.gt_ids},
        }

    def _clear_fields(self) -> dict[str, float | int]:
        num_gt = max(1.0, self.tp + self.fn)
        num_gt_ids = max(1.0, self.mt + self.ml + self.pt)
        log_idsw = math.log10(self.idsw) if self.idsw > 0 else self.idsw
        ratios = {
            "MOTA": (self.tp - self.fp - self.idsw) / num_gt,
            "MOTP": self.motp_sum / max(1.0, self.tp),
            "MODA": (self.tp - self.fp) / num_gt,
            "CLR_Re": self.tp / num_gt,
            "CLR_Pr": self.tp / max(1.0, self.tp + self.fp),
            "MTR": self.mt / num_gt_ids,
            "PTR": self.pt / num_gt_ids,
            "MLR": self.ml / num_gt_ids,
            "sMOTA": (self.motp_sum - self.fp - self.idsw) / num_gt,
            "CLR_F1": self.tp / max(1.0, self.tp + 0.5 * self.fn + 0.5 * self.fp),
            "FP_per_frame": self.fp / max(1.0, self.frames),
            "MOTAL": (self.tp - self.fp - log_idsw) / num_gt,
        }
        if self.early:  # TrackEval's early return leaves every ratio at 0, except MLR = 1
            ratios = {key: 0.0 for key in ratios} | {"MLR": 1.0}
        return {
            **{key: float(value) for key, value in ratios.items()},
            "MOTP_sum": float(self.motp_sum),
            "CLR_TP": int(self.tp),
            "CLR_FN": int(self.fn),
            "CLR_FP": int(self.fp),
            "IDSW": int(self.idsw),
            "MT": int(self.mt),
            "PT": int(self.pt),
            "ML": int(self.ml),
            "Frag": int(self.frag),
            "CLR_Frames": int(self.frames),
        }

    def _identity_fields(self) -> dict[str, float | int]:
        return {
            "IDF1": float(self.idtp / max(1.0, self.idtp + 0.5 * self.idfp + 0.5 * self.idfn)),
            "IDR": float(self.idtp / max(1.0, self.idtp + self.idfn)),
            "IDP": float(self.idtp / max(1.0, self.idtp + self.idfp)),
            "IDTP": int(self.idtp),
            "IDFN": int(self.idfn),
            "IDFP": int(self.idfp),
        }

    def _hota_fields(self) -> dict[str, Any]:
        tp = self.hota_tp
        det_re = tp / np.maximum(1, tp + self.hota_fn)
        det_pr = tp / np.maximum(1, tp + self.hota_fp)
        det_a = tp / np.maximum(1, tp + self.hota_fn + self.hota_fp)
        ass_a = self.hota_assa_weighted / np.maximum(1.0, tp)
        ass_re = self.hota_assre_weighted / np.maximum(1.0, tp)
        ass_pr = self.hota_asspr_weighted / np.maximum(1.0, tp)
        loc_a = np.maximum(1e-10, self.hota_loca_weighted) / np.maximum(1e-10, tp)
        hota = np.sqrt(det_a * ass_a)
        return {
            "HOTA": hota,
            "DetA": det_a,
            "AssA": ass_a,
            "DetRe": det_re,
            "DetPr": det_pr,
            "AssRe": ass_re,
            "AssPr": ass_pr,
            "LocA": loc_a,
            "OWTA": np.sqrt(det_re * ass_a),
            "HOTA_TP": tp.copy(),
            "HOTA_FN": self.hota_fn.copy(),
            "HOTA_FP": self.hota_fp.copy(),
            "HOTA(0)": float(hota[0]),
            "LocA(0)": float(loc_a[0]),
            "HOTALocA(0)": float(hota[0] * loc_a[0]),
        }

    def metrics(self) -> dict[str, float | int]:
        """The compact metrics dict of ``hvps evaluate mots`` (keys :data:`MOTS_METRIC_KEYS`)."""
        families = self.fields()
        clear, hota = families["CLEAR"], families["HOTA"]
        return {
            "sMOTSA": clear["sMOTA"],
            "MOTSA": clear["MOTA"],
            "MOTSP": clear["MOTP"],
            "IDF1": families["Identity"]["IDF1"],
            "TP": clear["CLR_TP"],
            "FP": clear["CLR_FP"],
            "FN": clear["CLR_FN"],
            "IDSW": clear["IDSW"],
            "HOTA": float(np.mean(hota["HOTA"])),
            "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])),
        }


#: the fields of :meth:`MOTSCounts.to_vector`, in order (``hota_*`` are arrays over the alphas)
_VECTOR_FIELDS = (
    "tp", "fp", "fn", "idsw", "motp_sum", "mt", "pt", "ml", "frag", "frames", "idtp", "idfp", "idfn",
    "hota_tp", "hota_fp", "hota_fn", "hota_assa_weighted", "hota_assre_weighted", "hota_asspr_weighted",
    "hota_loca_weighted", "dets", "gt_dets", "ids", "gt_ids",
)  # fmt: skip


def metric_from_vectors(vectors: np.ndarray, key: str) -> np.ndarray:
    """One metric of :data:`MOTS_METRIC_KEYS` from summed :meth:`MOTSCounts.to_vector` vectors.

    Vectorised over the leading axes (``vectors[..., :]``): what a block bootstrap evaluates
    for thousands of resamples at once. The same formulas as :meth:`MOTSCounts.metrics`.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    offsets, offset = {}, 0
    for name in _VECTOR_FIELDS:
        size = len(HOTA_ALPHAS) if name.startswith("hota_") else 1
        offsets[name] = slice(offset, offset + size)
        offset += size

    def get(name: str) -> np.ndarray:
        part = vectors[..., offsets[name]]
        return part[..., 0] if part.shape[-1] == 1 and not name.startswith("hota_") else part

    tp, fp, fn, idsw, motp_sum = get("tp"), get("fp"), get("fn"), get("idsw"), get("motp_sum")
    num_gt = np.maximum(1.0, tp + fn)
    if key == "sMOTSA":
        return (motp_sum - fp - idsw) / num_gt
    if key == "MOTSA":
        return (tp - fp - idsw) / num_gt
    if key == "MOTSP":
        return motp_sum / np.maximum(1.0, tp)
    if key == "IDF1":
        idtp = get("idtp")
        return idtp / np.maximum(1.0, idtp + 0.5 * get("idfp") + 0.5 * get("idfn"))
    if key in ("TP", "FP", "FN", "IDSW"):
        return {"TP": tp, "FP": fp, "FN": fn, "IDSW": idsw}[key]
    hota_tp = get("hota_tp")
    det_a = hota_tp / np.maximum(1.0, hota_tp + get("hota_fn") + get("hota_fp"))
    ass_a = get("hota_assa_weighted") / np.maximum(1.0, hota_tp)
    if key == "HOTA":
        return np.mean(np.sqrt(det_a * ass_a), axis=-1)
    if key == "DetA":
        return np.mean(det_a, axis=-1)
    if key == "AssA":
        return np.mean(ass_a, axis=-1)
    raise KeyError(f"unknown MOTS metric {key!r}; expected one of {', '.join(MOTS_METRIC_KEYS)}")


def preprocess_sequence(
    gt_objects: Sequence[MOTSObject],
    pred_objects: Sequence[MOTSObject],
    class_id: int = PEDESTRIAN_CLASS,
    where: str = "",
    num_frames: int | None = None,
) -> SequenceMatches:
    """Select the class, remove predictions in ignore regions, compute IoUs (steps 1-2 above).

    ``num_frames`` is the sequence's length (default: the frames the objects span, see
    :func:`spanned_frames`).

    Raises:
        HVPSError: if a frame's predicted masks differ in size from its ground truth.
    """
    gt_by_frame: dict[int, list[MOTSObject]] = defaultdict(list)
    pred_by_frame: dict[int, list[MOTSObject]] = defaultdict(list)
    for obj in gt_objects:
        gt_by_frame[obj.frame].append(obj)
    for obj in pred_objects:
        pred_by_frame[obj.frame].append(obj)

    raw_gt_ids, raw_pred_ids, similarities = [], [], []
    for frame in sorted(set(gt_by_frame) | set(pred_by_frame)):
        gts = [o for o in gt_by_frame[frame] if not o.is_ignore and o.class_id == class_id]
        ignore = [o for o in gt_by_frame[frame] if o.is_ignore]
        preds = [o for o in pred_by_frame[frame] if o.class_id == class_id and not o.is_ignore]
        _check_sizes(gt_by_frame[frame], preds, where, frame)
        gt_rles = [o.rle for o in gts]
        pred_rles = [o.rle for o in preds]
        similarity = mask_iou(gt_rles, pred_rles)

        keep = np.ones(len(preds), dtype=bool)
        if ignore and preds:
            is_unmatched = np.ones(len(preds), dtype=bool)
            if gts:
                scores = similarity.copy()
                scores[scores < MATCH_THRESHOLD - _EPS] = -10000.0
                rows, cols = linear_sum_assignment(-scores)
                is_unmatched[cols[scores[rows, cols] > 0.0 + _EPS]] = False
            unmatched = np.flatnonzero(is_unmatched)
            if unmatched.size:
                region = merge_masks([o.rle for o in ignore])
                inside = mask_iou([pred_rles[i] for i in unmatched], [region], ioa=True)[:, 0]
                keep[unmatched[inside > 0.5 + _EPS]] = False
        keep = np.flatnonzero(keep)

        raw_gt_ids.append(np.array([o.obj_id for o in gts], dtype=np.int64))
        raw_pred_ids.append(np.array([preds[i].obj_id for i in keep], dtype=np.int64))
        similarities.append(similarity[:, keep])

    data = SequenceMatches(similarity=similarities)
    data.num_frames = num_frames if num_frames is not None else spanned_frames([*gt_objects, *pred_objects])
    data.gt_ids, data.num_gt_ids = _relabel(raw_gt_ids)
    data.pred_ids, data.num_pred_ids = _relabel(raw_pred_ids)
    return data


def _check_sizes(gts: list[MOTSObject], preds: list[MOTSObject], where: str, frame: int) -> None:
    if not gts or not preds:
        return
    gt_size = tuple(int(v) for v in gts[0].rle["size"])
    for obj in preds:
        size = tuple(int(v) for v in obj.rle["size"])
        if size != gt_size:
            raise HVPSError(
                f"{where}: frame {frame}: predicted mask of id {obj.obj_id} is {size[0]}x{size[1]}, "
                f"the ground truth is {gt_size[0]}x{gt_size[1]}"
            )


def _relabel(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map ids to 0 .. n-1 (sorted order), as TrackEval does before evaluating."""
    if not ids_per_frame:
        return [], 0
    unique = np.unique(np.concatenate(ids_per_frame))
    return [np.searchsorted(unique, ids).astype(np.int64) for ids in ids_per_frame], int(unique.size)


def clear_counts(data: SequenceMatches) -> MOTSCounts:
    """TrackEval's CLEAR counts: TP, FP, FN, IDSW, summed TP IoU, MT/PT/ML and Frag (step 3 above)."""
    counts = MOTSCounts(frames=data.num_frames)
    gt_id_count = np.zeros(data.num_gt_ids)  # frames each ground-truth id is present (MT/PT/ML)
    gt_matched_count = np.zeros(data.num_gt_ids)
    gt_frag_count = np.zeros(data.num_gt_ids)
    last_pred = np.full(data.num_gt_ids, np.nan)  # for IDSW: last match, any frame before
    # For matching: the matches of the previous frame. As in TrackEval, a frame without
    # ground truth or without predictions leaves it as it was.
    previous_frame_pred = np.full(data.num_gt_ids, np.nan)
    for gt_ids, pred_ids, similarity in zip(data.gt_ids, data.pred_ids, data.similarity, strict=True):
        if gt_ids.size == 0:
            counts.fp += int(pred_ids.size)
            continue
        if pred_ids.size == 0:
            counts.fn += int(gt_ids.size)
            gt_id_count[gt_ids] += 1
            continue
        # Continuing the previous frame's match outweighs any IoU; IoU breaks the other ties.
        continues = pred_ids[None, :] == previous_frame_pred[gt_ids][:, None]
        scores = 1000.0 * continues + similarity
        scores[similarity < MATCH_THRESHOLD - _EPS] = 0.0
        rows, cols = linear_sum_assignment(-scores)
        matched = scores[rows, cols] > 0.0 + _EPS
        rows, cols = rows[matched], cols[matched]
        matched_gt, matched_pred = gt_ids[rows], pred_ids[cols]
        before = last_pred[matched_gt]
        counts.idsw += int(np.sum(~np.isnan(before) & (matched_pred != before)))
        gt_id_count[gt_ids] += 1
        gt_matched_count[matched_gt] += 1
        not_tracked_before = np.isnan(previous_frame_pred)
        last_pred[matched_gt] = matched_pred
        previous_frame_pred[:] = np.nan
        previous_frame_pred[matched_gt] = matched_pred
        gt_frag_count += not_tracked_before & ~np.isnan(previous_frame_pred)
        counts.tp += int(rows.size)
        counts.fn += int(gt_ids.size - rows.size)
        counts.fp += int(pred_ids.size - rows.size)
        counts.motp_sum += float(similarity[rows, cols].sum())
    present = gt_id_count > 0
    tracked_ratio = gt_matched_count[present] / gt_id_count[present]
    counts.mt = int(np.sum(tracked_ratio > 0.8))
    counts.pt = int(np.sum(tracked_ratio >= 0.2)) - counts.mt
    counts.ml = data.num_gt_ids - counts.mt - counts.pt
    counts.frag = int(np.sum(gt_frag_count[gt_frag_count > 0] - 1))
    return counts


def identity_counts(data: SequenceMatches) -> tuple[int, int, int]:
    """IDTP, IDFP, IDFN of the global one-to-one identity assignment (step 4 above).

    TrackEval minimises IDFN + IDFP over an augmented matrix; both equal the totals minus
    twice the IDTP of the assignment, so the assignment that maximises the frames in which
    a ground-truth id and a predicted id overlap with IoU >= 0.5 is the same one.
    """
    if data.num_gt_dets == 0 or data.num_pred_dets == 0:
        return 0, data.num_pred_dets, data.num_gt_dets
    overlap_frames = np.zeros((data.num_gt_ids, data.num_pred_ids))
    for gt_ids, pred_ids, similarity in zip(data.gt_ids, data.pred_ids, data.similarity, strict=True):
        rows, cols = np.nonzero(similarity >= MATCH_THRESHOLD)
        np.add.at(overlap_frames, (gt_ids[rows], pred_ids[cols]), 1)
    rows, cols = linear_sum_assignment(overlap_frames, maximize=True)
    idtp = int(overlap_frames[rows, cols].sum())
    return idtp, data.num_pred_dets - idtp, data.num_gt_dets - idtp


def hota_counts(data: SequenceMatches) -> MOTSCounts:
    """HOTA_TP/FP/FN and AssA, AssRe, AssPr, LocA times HOTA_TP, per alpha (TrackEval HOTA)."""
    counts = MOTSCounts()
    if data.num_pred_dets == 0:
        counts.hota_fn += data.num_gt_dets
        return counts
    if data.num_gt_dets == 0:
        counts.hota_fp += data.num_pred_dets
        return counts
    potential = np.zeros((data.num_gt_ids, data.num_pred_ids))
    gt_count = np.zeros((data.num_gt_ids, 1))
    pred_count = np.zeros((1, data.num_pred_ids))
    for gt_ids, pred_ids, similarity in zip(data.gt_ids, data.pred_ids, data.similarity, strict=True):
        denominator = similarity.sum(0)[None, :] + similarity.sum(1)[:, None] - similarity
        normalised = np.zeros_like(similarity)
        positive = denominator > 0 + _EPS
        normalised[positive] = similarity[positive] / denominator[positive]
        potential[gt_ids[:, None], pred_ids[None, :]] += normalised
        gt_count[gt_ids] += 1
        pred_count[0, pred_ids] += 1
    alignment = potential / (gt_count + pred_count - potential)

    matches = np.zeros((len(HOTA_ALPHAS), data.num_gt_ids, data.num_pred_ids))
    loc_sum = np.zeros(len(HOTA_ALPHAS))
    for gt_ids, pred_ids, similarity in zip(data.gt_ids, data.pred_ids, data.similarity, strict=True):
        if gt_ids.size == 0 or pred_ids.size == 0:
            counts.hota_fp += pred_ids.size
            counts.hota_fn += gt_ids.size
            continue
        rows, cols = linear_sum_assignment(-(alignment[gt_ids[:, None], pred_ids[None, :]] * similarity))
        pair_iou = similarity[rows, cols]
        matched = pair_iou[None, :] >= HOTA_ALPHAS[:, None] - _EPS  # (alphas, pairs)
        num_matches = matched.sum(axis=1)
        counts.hota_tp += num_matches
        counts.hota_fn += gt_ids.size - num_matches
        counts.hota_fp += pred_ids.size - num_matches
        loc_sum += (matched * pair_iou[None, :]).sum(axis=1)
        alpha_index, pair_index = np.nonzero(matched)
        np.add.at(matches, (alpha_index, gt_ids[rows[pair_index]], pred_ids[cols[pair_index]]), 1)
    tp = np.maximum(1, counts.hota_tp)
    ass_a = matches / np.maximum(1, gt_count[None] + pred_count[None] - matches)
    ass_re = matches / np.maximum(1, gt_count[None])
    ass_pr = matches / np.maximum(1, pred_count[None])
    counts.hota_assa_weighted = np.sum(matches * ass_a, axis=(1, 2)) / tp * counts.hota_tp
    counts.hota_assre_weighted = np.sum(matches * ass_re, axis=(1, 2)) / tp * counts.hota_tp
    counts.hota_asspr_weighted = np.sum(matches * ass_pr, axis=(1, 2)) / tp * counts.hota_tp
    loc_a = np.maximum(1e-10, loc_sum) / np.maximum(1e-10, counts.hota_tp)
    counts.hota_loca_weighted = loc_a * counts.hota_tp
    return counts


def sequence_counts(data: SequenceMatches) -> MOTSCounts:
    """All counts of one preprocessed sequence."""
    counts = clear_counts(data)
    if data.num_gt_dets == 0 or data.num_pred_dets == 0:
        # TrackEval's early return: the frames are not counted and MT/PT/ML stay 0 but ML
        counts.frames = 0
        counts.early = True
    counts.idtp, counts.idfp, counts.idfn = identity_counts(data)
    hota = hota_counts(data)
    for name in ("hota_tp", "hota_fp", "hota_fn", "hota_assa_weighted", "hota_assre_weighted",
                 "hota_asspr_weighted", "hota_loca_weighted"):  # fmt: skip
        setattr(counts, name, getattr(hota, name))
    counts.dets, counts.gt_dets = data.num_pred_dets, data.num_gt_dets
    counts.ids, counts.gt_ids = data.num_pred_ids, data.num_gt_ids
    return counts


def spanned_frames(objects: Sequence[MOTSObject]) -> int:
    """The frames a sequence's objects span: from 0 (KITTI-MOTS numbering) or 1 (MOTS20) to the last."""
    if not objects:
        return 0
    frames = [o.frame for o in objects]
    return max(frames) - (0 if min(frames) == 0 else 1) + 1


def mots_counts(
    gt: Mapping[str, Sequence[MOTSObject]],
    pred: Mapping[str, Sequence[MOTSObject]],
    class_id: int = PEDESTRIAN_CLASS,
    sources: Mapping[str, tuple[str, str]] | None = None,
    lengths: Mapping[str, int] | None = None,
    on_sequence: Callable[[], None] | None = None,
) -> dict[str, MOTSCounts]:
    """The counts of every sequence of ``gt`` (see :func:`evaluate_mots` for the arguments).

    Sum them (``sum(counts.values(), MOTSCounts())``) to combine sequences, or any subset of
    them: blocks of frames, resampled sequences. ``on_sequence`` is called after each sequence
    (a progress bar).
    """
    sources = sources or {}
    lengths = lengths or {}
    counts: dict[str, MOTSCounts] = {}
    for sequence in sorted(gt):
        gt_where, pred_where = sources.get(
            sequence, (f"sequence {sequence} (ground truth)", f"sequence {sequence}")
        )
        if sequence not in pred:
            raise HVPSError(f"{pred_where}: no predictions for ground-truth sequence {sequence!r}")
        check_no_overlap(gt[sequence], gt_where)
        check_no_overlap(pred[sequence], pred_where)
        data = preprocess_sequence(gt[sequence], pred[sequence], class_id, pred_where, lengths.get(sequence))
        counts[sequence] = sequence_counts(data)
        if on_sequence is not None:
            on_sequence()
    return counts


def evaluate_mots(
    gt: Mapping[str, Sequence[MOTSObject]],
    pred: Mapping[str, Sequence[MOTSObject]],
    class_id: int = PEDESTRIAN_CLASS,
    sources: Mapping[str, tuple[str, str]] | None = None,
    lengths: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """MOTS metrics of the sequences of ``gt`` (predictions of other sequences are ignored).

    Args:
        gt: sequence -> ground-truth objects (ignore regions included).
        pred: sequence -> predicted objects; every sequence of ``gt`` needs an entry.
        class_id: the MOTS class evaluated (2 pedestrians, 1 cars).
        sources: sequence -> (gt file, prediction file) named in error messages.
        lengths: sequence -> its number of frames, where known (``seqinfo.ini``, a seqmap).

    Returns:
        ``{"combined": M, "per_sequence": {sequence: M}}`` with ``M`` keyed by
        :data:`MOTS_METRIC_KEYS`.

    Raises:
        HVPSError: for a missing prediction sequence, overlapping masks or a repeated id in
            a frame, or masks whose size differs from the ground truth.
    """
    counts = mots_counts(gt, pred, class_id, sources, lengths)
    total = sum(counts.values(), MOTSCounts())
    return {"combined": total.metrics(), "per_sequence": {s: c.metrics() for s, c in counts.items()}}
