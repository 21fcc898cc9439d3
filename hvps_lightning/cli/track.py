r"""``hvps track``: track a detection cache; write MOTS txt and, with a semantic cache, STEP PNGs.

Example::

    hvps predict --config stages/mot_step/mots --config predict/mots --ckpt_path MOTS.ckpt
    hvps track --detections cache/detections --out runs/tracked \\
        --tracker-config tracker/default --semantic cache/semantic \\
        --gt data/motchallenge_step

Writes, every file under a temporary name and renamed when complete:

* ``<out>/mots/<seq>.txt``: MOTS txt per sequence (ids ``class * 1000 + track id``, frame =
  ``int(frame name)``; see :mod:`hvps_lightning.formats.tracked`);
* ``<out>/step/<seq>/<frame>.png``: fused STEP panoptic PNGs, with ``--semantic DIR`` (a
  semantic cache ``<DIR>/<seq>/<frame>.png``);
* ``<out>/tracker_config.yaml``: the tracker parameters used;
* ``<out>/summary.json``: per sequence, frames, tracks and objects; with ``--gt``, the scores.

With ``--gt`` (a dataset root or a folder ``<seq>/<frame>.png`` of STEP ground truth) the tracks
are also scored in the same pass: AQ of the tracks fused into the ground-truth semantic map,
STQ/SQ of the fused output (with ``--semantic``) and the MOTS metrics, through the project's
one evaluation path (:func:`~hvps_lightning.evaluation.scoring.track_fuse_score`), so the
numbers equal those of the offline tracker callback and of the tracker sweeps.

The dataset (classes, MOTS class ids) comes from ``--dataset``, else from the cache metadata,
else ``motchallenge_step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.progress import add_quiet_argument, progress_bar
from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.specs import SPECS
from hvps_lightning.wandb_io import resolve_path

DEFAULT_DATASET = "motchallenge_step"
FUSION_RULES = ("crowd", "void", "stuff")


def build_parser() -> ArgumentParser:
    """The ``hvps track`` argument parser."""
    parser = ArgumentParser(
        prog="hvps track",
        description="Track a detection cache (IA-MOT style tracker); write MOTS txt and, with "
        "--semantic, fused STEP panoptic PNGs; with --gt, score them.",
    )
    parser.add_argument(
        "--detections",
        type=str,
        required=True,
        help="detection cache folder (hvps predict), or a wandb-artifact://entity/project/name:version",
    )
    parser.add_argument("--out", type=str, required=True, help="output folder: mots/, step/, summary.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out whole")
    parser.add_argument(
        "--tracker-config", type=str | None, default=None, help="tracker YAML (default: built-in defaults)"
    )
    parser.add_argument(
        "--semantic",
        type=str | None,
        default=None,
        help="semantic cache <seq>/<frame>.png (or wandb-artifact://...): write STEP PNGs",
    )
    parser.add_argument(
        "--gt",
        type=str | None,
        default=None,
        help="STEP ground truth (dataset root or <seq>/<frame>.png folder): score the tracks (AQ, STQ, MOTS)",
    )
    parser.add_argument(
        "--split", type=str | None, default=None, help="with --gt: folder/split of a dataset root"
    )
    parser.add_argument(
        "--dataset",
        type=str | None,
        default=None,
        help=f"dataset spec ({', '.join(SPECS)}); default: the cache metadata, else {DEFAULT_DATASET}",
    )
    parser.add_argument("--sequences", type=str, nargs="+", default=None, help="track only these sequences")
    parser.add_argument(
        "--fusion-rule",
        type=str | None,
        default=None,
        help="what thing pixels no track covers become: crowd, void or stuff (default: the fusion's)",
    )
    add_quiet_argument(parser)
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps track``; return the exit code."""
    from hvps_lightning.evaluation.ground_truth import StepFolderGroundTruth, locate_ground_truth
    from hvps_lightning.formats.detection_cache import (
        cache_dataset,
        list_cached_sequences,
        read_detection_cache_dir,
    )
    from hvps_lightning.io import check_output_folder, output_folder
    from hvps_lightning.structures.specs import get_spec
    from hvps_lightning.tracking.config import TrackerConfig

    out = check_output_folder(cfg.out, cfg.overwrite)
    detections = Path(resolve_path(cfg.detections, "dataset", "--detections"))
    if cfg.semantic:
        cfg.semantic = resolve_path(cfg.semantic, "dataset", "--semantic")
    if not detections.is_dir():
        raise HVPSError(f"--detections {detections}: not a folder")
    config = TrackerConfig.from_yaml(cfg.tracker_config) if cfg.tracker_config else TrackerConfig()
    available = list_cached_sequences(detections)
    if not available:
        raise HVPSError(f"--detections {detections}: no cached sequences (<seq>.json + <seq>.npz)")
    names = available
    if cfg.sequences:
        unknown = [s for s in cfg.sequences if s not in available]
        if unknown:
            raise HVPSError(f"--sequences: {', '.join(unknown)} not in {detections} ({', '.join(available)})")
        names = list(cfg.sequences)
    semantic_dir = Path(cfg.semantic) if cfg.semantic else None
    if semantic_dir is not None and not semantic_dir.is_dir():
        raise HVPSError(f"--semantic {semantic_dir}: not a folder")
    if cfg.fusion_rule is not None and cfg.fusion_rule not in FUSION_RULES:
        raise HVPSError(f"--fusion-rule {cfg.fusion_rule}: expected one of {', '.join(FUSION_RULES)}")
    if cfg.fusion_rule is not None and semantic_dir is None and cfg.gt is None:
        raise HVPSError("--fusion-rule: only used with --semantic or --gt")
    if cfg.split is not None and cfg.gt is None:
        raise HVPSError("--split: only used with --gt")

    # Read every sequence first: a bad cache file fails before anything is written.
    cached = read_detection_cache_dir(detections, names)
    spec = get_spec(cfg.dataset or cache_dataset(cached[names[0]][1]) or DEFAULT_DATASET)
    if semantic_dir is not None:
        missing = [n for n in names if not (semantic_dir / n).is_dir()]
        if missing:
            raise HVPSError(f"--semantic {semantic_dir}: no folder for sequence(s) {', '.join(missing)}")
    ground_truth = None
    if cfg.gt is not None:
        ground_truth = StepFolderGroundTruth(
            locate_ground_truth(cfg.gt, "panoptic", names, spec, cfg.split), spec
        )

    with output_folder(out, cfg.overwrite) as partial:
        summary = _track_into(partial, cached, spec, semantic_dir, ground_truth, config, cfg)
    total = sum(s["frames"] for s in summary["sequences"].values())
    written = "MOTS txt" + (" and STEP PNGs" if semantic_dir is not None else "")
    print(f"hvps track: {len(names)} sequence(s), {total} frame(s): {written} in {out}")
    if ground_truth is not None:
        shown = {k: summary["scores"][k] for k in ("aq", "stq", "sq") if k in summary["scores"]}
        print("hvps track: " + ", ".join(f"{k.upper()} {100 * v:.1f}" for k, v in shown.items()))
    return 0


def _track_into(
    partial: Path,
    cached: dict[str, Any],
    spec: Any,
    semantic_dir: Path | None,
    ground_truth: Any,
    config: Any,
    cfg: Namespace,
) -> dict[str, Any]:
    """Track, fuse, score and write everything into ``partial`` (the output folder being built)."""
    from hvps_lightning.evaluation.scoring import track_fuse_score
    from hvps_lightning.evaluation.semantic import SemanticCache
    from hvps_lightning.formats.step_png import write_step_png
    from hvps_lightning.formats.tracked import STEP_DIR, write_mots_sequence
    from hvps_lightning.io import write_json
    from hvps_lightning.panoptic.fusion import DEFAULT_UNCOVERED

    def write_fused(sequence: str, frame: str, fused: Any) -> None:
        write_step_png(partial / STEP_DIR / sequence / f"{frame}.png", *fused)

    total = sum(len(frames) for frames, _ in cached.values())
    tracked_frames = 0
    with progress_bar(cfg.quiet, unit="frame", desc="track") as progress:

        def on_tracked() -> None:
            nonlocal tracked_frames
            tracked_frames += 1
            if progress is not None:
                progress(tracked_frames, total)

        result = track_fuse_score(
            {name: frames for name, (frames, _) in cached.items()},
            SemanticCache(semantic_dir) if semantic_dir is not None else None,
            ground_truth,
            config,
            cfg.fusion_rule or DEFAULT_UNCOVERED,
            spec=spec,
            on_fused=write_fused,
            on_tracked=on_tracked,
        )
    summary: dict[str, Any] = {"dataset": spec.name, "sequences": {}}
    for name, tracked in result.tracked.items():
        write_mots_sequence(partial, name, tracked.frame_names, tracked.tracks, spec)
        summary["sequences"][name] = {
            "frames": len(tracked.frames),
            "tracks": tracked.num_tracks,
            "objects": sum(len(objects) for objects in tracked.tracks),
        }
    config.to_yaml(partial / "tracker_config.yaml")
    summary["tracker_config"] = config.to_dict()
    if ground_truth is not None:
        summary["scores"] = {
            k: v for k, v in result.scores.items() if k not in ("num_tracks", "frames_with_gt")
        }
    write_json(partial / "summary.json", summary)
    return summary

