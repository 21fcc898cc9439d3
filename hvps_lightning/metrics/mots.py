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

Libraries: mask IoUs come from pycocotools (``mask.iou`` on the RLEs, no decoding); IDF1 is
motmetrics' identity assignment (``MOTAccumulator`` fed with 1 - IoU for IoU >= 0.5). The
CLEAR matching is written here because motmetrics re-establishes the *last-ever* match of a
ground-truth id before its Hungarian step, whereas TrackEval (and docs/ARCHITECTURE.md) prefer only the
match of the previous frame; the two differ on ties after a frame in which the ground truth
went unmatched. motmetrics has no HOTA.

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

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import motmetrics
import numpy as np
from scipy.optimize import linear_sum_assignment

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats.mots_txt import PEDESTRIAN_CLASS, MOTSObject, check_no_overlap, read_mots_txt
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
    """

    gt_ids: list[np.ndarray] = field(default_factory=list)
    pred_ids: list[np.ndarray] = field(default_factory=list)
    similarity: list[np.ndarray] = field(default_factory=list)
    num_gt_ids: int = 0
    num_pred_ids: int = 0

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
    """Summable counts of one or more sequences; :meth:`metrics` turns them into numbers.

    The HOTA arrays have one entry per alpha of :data:`HOTA_ALPHAS`; ``hota_assa_weighted``
    holds AssA * HOTA_TP so that sequences combine as TrackEval's weighted average.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    idsw: int = 0
    motp_sum: float = 0.0
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0
    hota_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_assa_weighted: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))

    def __add__(self, other: MOTSCounts) -> MOTSCounts:
        return MOTSCounts(
            tp=self.tp + other.tp,
            fp=self.fp + other.fp,
            fn=self.fn + other.fn,
            idsw=self.idsw + other.idsw,
            motp_sum=self.motp_sum + other.motp_sum,
            idtp=self.idtp + other.idtp,
            idfp=self.idfp + other.idfp,
            idfn=self.idfn + other.idfn,
            hota_tp=self.hota_tp + other.hota_tp,
            hota_fp=self.hota_fp + other.hota_fp,
            hota_fn=self.hota_fn + other.hota_fn,
            hota_assa_weighted=self.hota_assa_weighted + other.hota_assa_weighted,
        )

    def metrics(self) -> dict[str, float | int]:
        """The metrics dict (TrackEval's final-field formulas)."""
        num_gt = max(1.0, self.tp + self.fn)
        det_a = self.hota_tp / np.maximum(1.0, self.hota_tp + self.hota_fn + self.hota_fp)
        ass_a = self.hota_assa_weighted / np.maximum(1.0, self.hota_tp)
        return {
            "sMOTSA": float((self.motp_sum - self.fp - self.idsw) / num_gt),
            "MOTSA": float((self.tp - self.fp - self.idsw) / num_gt),
            "MOTSP": float(self.motp_sum / max(1.0, self.tp)),
            "IDF1": float(self.idtp / max(1.0, self.idtp + 0.5 * self.idfp + 0.5 * self.idfn)),
            "TP": int(self.tp),
            "FP": int(self.fp),
            "FN": int(self.fn),
            "IDSW": int(self.idsw),
            "HOTA": float(np.mean(np.sqrt(det_a * ass_a))),
            "DetA": float(np.mean(det_a)),
            "AssA": float(np.mean(ass_a)),
        }


def preprocess_sequence(
    gt_objects: Sequence[MOTSObject],
    pred_objects: Sequence[MOTSObject],
    class_id: int = PEDESTRIAN_CLASS,
    where: str = "",
) -> SequenceMatches:
    """Select the class, remove predictions in ignore regions, compute IoUs (steps 1-2 above).

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
    """TP, FP, FN, IDSW and the summed IoU of TPs (TrackEval CLEAR, step 3 above)."""
    counts = MOTSCounts()
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
        last_pred[matched_gt] = matched_pred
        previous_frame_pred[:] = np.nan
        previous_frame_pred[matched_gt] = matched_pred
        counts.tp += int(rows.size)
        counts.fn += int(gt_ids.size - rows.size)
        counts.fp += int(pred_ids.size - rows.size)
        counts.motp_sum += float(similarity[rows, cols].sum())
    return counts


def identity_counts(data: SequenceMatches) -> tuple[int, int, int]:
    """IDTP, IDFP, IDFN from motmetrics' global identity assignment (step 4 above)."""
    if data.num_gt_dets == 0 or data.num_pred_dets == 0:
        return 0, data.num_pred_dets, data.num_gt_dets
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for gt_ids, pred_ids, similarity in zip(data.gt_ids, data.pred_ids, data.similarity, strict=True):
        distances = np.where(similarity >= MATCH_THRESHOLD, 1.0 - similarity, np.nan)
        accumulator.update(gt_ids, pred_ids, distances)
    summary = motmetrics.metrics.create().compute(
        accumulator, metrics=["idtp", "idfp", "idfn"], return_dataframe=False
    )
    # sums of frame counts: integral floats, exact
    return int(summary["idtp"]), int(summary["idfp"]), int(summary["idfn"])


def hota_counts(data: SequenceMatches) -> MOTSCounts:
    """HOTA_TP/FP/FN and AssA * HOTA_TP per alpha (TrackEval HOTA)."""
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
    for gt_ids, pred_ids, similarity in zip(data.gt_ids, data.pred_ids, data.similarity, strict=True):
        if gt_ids.size == 0 or pred_ids.size == 0:
            counts.hota_fp += pred_ids.size
            counts.hota_fn += gt_ids.size
            continue
        rows, cols = linear_sum_assignment(-(alignment[gt_ids[:, None], pred_ids[None, :]] * similarity))
        matched = similarity[rows, cols][None, :] >= HOTA_ALPHAS[:, None] - _EPS  # (alphas, pairs)
        num_matches = matched.sum(axis=1)
        counts.hota_tp += num_matches
        counts.hota_fn += gt_ids.size - num_matches
        counts.hota_fp += pred_ids.size - num_matches
        alpha_index, pair_index = np.nonzero(matched)
        np.add.at(matches, (alpha_index, gt_ids[rows[pair_index]], pred_ids[cols[pair_index]]), 1)
    ass_a = matches / np.maximum(1, gt_count[None] + pred_count[None] - matches)
    ass_a_mean = np.sum(matches * ass_a, axis=(1, 2)) / np.maximum(1, counts.hota_tp)
    counts.hota_assa_weighted = ass_a_mean * counts.hota_tp
    return counts


def sequence_counts(data: SequenceMatches) -> MOTSCounts:
    """All counts of one preprocessed sequence."""
    counts = clear_counts(data)
    counts.idtp, counts.idfp, counts.idfn = identity_counts(data)
    hota = hota_counts(data)
    counts.hota_tp, counts.hota_fp, counts.hota_fn = hota.hota_tp, hota.hota_fp, hota.hota_fn
    counts.hota_assa_weighted = hota.hota_assa_weighted
    return counts


def sequence_metrics(counts: MOTSCounts, num_gt_dets: int) -> dict[str, float | int]:
    """Per-sequence metrics: TrackEval returns early (ratios 0) for a sequence without ground truth."""
    metrics = counts.metrics()
    if num_gt_dets == 0:
        metrics.update(sMOTSA=0.0, MOTSA=0.0, MOTSP=0.0, IDF1=0.0, HOTA=0.0, DetA=0.0, AssA=0.0)
    return metrics


def evaluate_mots(
    gt: Mapping[str, Sequence[MOTSObject]],
    pred: Mapping[str, Sequence[MOTSObject]],
    class_id: int = PEDESTRIAN_CLASS,
    sources: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """MOTS metrics of the sequences of ``gt`` (predictions of other sequences are ignored).

    Args:
        gt: sequence -> ground-truth objects (ignore regions included).
        pred: sequence -> predicted objects; every sequence of ``gt`` needs an entry.
        class_id: the MOTS class evaluated (2 pedestrians, 1 cars).
        sources: sequence -> (gt file, prediction file) named in error messages.

    Returns:
        ``{"combined": M, "per_sequence": {sequence: M}}`` with ``M`` keyed by
        :data:`MOTS_METRIC_KEYS`.

    Raises:
        HVPSError: for a missing prediction sequence, overlapping masks or a repeated id in
            a frame, or masks whose size differs from the ground truth.
    """
    sources = sources or {}
    per_sequence: dict[str, dict[str, float | int]] = {}
    total = MOTSCounts()
    for sequence in sorted(gt):
        gt_where, pred_where = sources.get(
            sequence, (f"sequence {sequence} (ground truth)", f"sequence {sequence}")
        )
        if sequence not in pred:
            raise HVPSError(f"{pred_where}: no predictions for ground-truth sequence {sequence!r}")
        check_no_overlap(gt[sequence], gt_where)
        check_no_overlap(pred[sequence], pred_where)
        data = preprocess_sequence(gt[sequence], pred[sequence], class_id, pred_where)
        counts = sequence_counts(data)
        per_sequence[sequence] = sequence_metrics(counts, data.num_gt_dets)
        total = total + counts
    return {"combined": total.metrics(), "per_sequence": per_sequence}


def evaluate_mots_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    class_id: int = PEDESTRIAN_CLASS,
    sequences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_mots` on two folders of ``<sequence>.txt`` MOTS files.

    Every ground-truth file (of ``sequences``, when given: e.g. MOTChallenge-STEP's val sequence
    0002, which shares ``train/`` with 0009) needs a prediction file of the same name; extra
    prediction files are ignored. An empty file is a valid empty sequence.

    Raises:
        HVPSError: naming the folder or file (missing, unreadable, malformed, overlapping masks).
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder, flag in ((gt_dir, "--gt"), (pred_dir, "--pred")):
        if not folder.is_dir():
            raise file_error(folder, f"{flag} is not a folder")
    gt_files = sorted(p for p in gt_dir.glob("*.txt") if p.is_file())
    if not gt_files:
        raise file_error(gt_dir, "no <sequence>.txt MOTS files in the ground-truth folder")
    if sequences is not None:
        available = {p.stem for p in gt_files}
        unknown = [s for s in sequences if s not in available]
        if unknown:
            names = ", ".join(sorted(available))
            raise HVPSError(f"--sequences: {', '.join(unknown)} not in {gt_dir} ({names})")
        gt_files = [p for p in gt_files if p.stem in set(sequences)]
    gt, pred, sources = {}, {}, {}
    for gt_file in gt_files:
        pred_file = pred_dir / gt_file.name
        if not pred_file.is_file():
            raise file_error(pred_file, f"missing prediction file for ground-truth sequence {gt_file.stem!r}")
        gt[gt_file.stem] = read_mots_txt(gt_file)
        pred[gt_file.stem] = read_mots_txt(pred_file)
        sources[gt_file.stem] = (str(gt_file), str(pred_file))
    return evaluate_mots(gt, pred, class_id, sources)
