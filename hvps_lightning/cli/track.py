r"""``hvps track``: track a detection cache; write MOTS txt and, with a semantic cache, STEP PNGs.

Example::

    hvps predict --config experiments/... --trainer.callbacks+=DetectionCacheWriter ...
    hvps track --detections cache/detections --out runs/tracked \\
        --tracker-config experiments/tracker/default.yaml --semantic cache/semantic

Writes, every file under a temporary name and renamed when complete:

* ``<out>/mots/<seq>.txt``: MOTS txt per sequence (ids ``class * 1000 + track id``, frame =
  ``int(frame name)``; see :mod:`hvps_lightning.formats.tracked`);
* ``<out>/step/<seq>/<frame>.png``: fused STEP panoptic PNGs, with ``--semantic DIR`` (a
  semantic cache ``<DIR>/<seq>/<frame>.png``), through
  :func:`hvps_lightning.panoptic.fusion.fuse_panoptic`;
* ``<out>/tracker_config.yaml``: the tracker parameters used;
* ``<out>/summary.json``: per sequence, frames, tracks and objects.

The dataset (classes, MOTS class ids) comes from ``--dataset``, else from the cache metadata,
else ``motchallenge_step``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.detection_cache import cache_dataset, list_cached_sequences, read_detection_cache
from hvps_lightning.formats.tracked import STEP_DIR, write_mots_sequence
from hvps_lightning.io import write_json
from hvps_lightning.structures.specs import SPECS, get_spec
from hvps_lightning.tracking.config import TrackerConfig
from hvps_lightning.tracking.tracker import track_sequence

DEFAULT_DATASET = "motchallenge_step"


def build_parser() -> ArgumentParser:
    """The ``hvps track`` argument parser."""
    parser = ArgumentParser(
        prog="hvps track",
        description="Track a detection cache (IA-MOT style tracker); write MOTS txt and, with "
        "--semantic, fused STEP panoptic PNGs.",
    )
    parser.add_argument("--detections", type=str, required=True, help="detection cache folder (hvps predict)")
    parser.add_argument("--out", type=str, required=True, help="output folder: mots/, step/, summary.json")
    parser.add_argument(
        "--tracker-config", type=str | None, default=None, help="tracker YAML (default: built-in defaults)"
    )
    parser.add_argument(
        "--semantic", type=str | None, default=None, help="semantic cache <seq>/<frame>.png: write STEP PNGs"
    )
    parser.add_argument(
        "--dataset",
        type=str | None,
        default=None,
        help=f"dataset spec ({', '.join(SPECS)}); default: the cache metadata, else {DEFAULT_DATASET}",
    )
    parser.add_argument("--sequences", type=str, nargs="+", default=None, help="track only these sequences")
    parser.add_argument(
        "--uncovered",
        type=str | None,
        default=None,
        help="fusion rule for thing pixels no track covers: crowd, void or stuff (default: the fusion's)",
    )
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar on stderr")
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps track``; return the exit code."""
    detections = Path(cfg.detections)
    out = Path(cfg.out)
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
    fusion_kwargs: dict[str, Any] = {}
    if semantic_dir is not None:
        from hvps_lightning.panoptic.fusion import UNCOVERED_RULES, fuse_sequence

        if cfg.uncovered is not None:
            if cfg.uncovered not in UNCOVERED_RULES:
                raise HVPSError(f"--uncovered {cfg.uncovered}: expected one of {', '.join(UNCOVERED_RULES)}")
            fusion_kwargs["uncovered"] = cfg.uncovered
    elif cfg.uncovered is not None:
        raise HVPSError("--uncovered: only used with --semantic")

    # Read every sequence first: a bad cache file fails before anything is written.
    cached = {name: read_detection_cache(detections, name) for name in names}
    dataset = cfg.dataset or cache_dataset(cached[names[0]][1]) or DEFAULT_DATASET
    spec = get_spec(dataset)
    if semantic_dir is not None:
        missing = [n for n in names if not (semantic_dir / n).is_dir()]
        if missing:
            raise HVPSError(f"--semantic {semantic_dir}: no folder for sequence(s) {', '.join(missing)}")

    total = sum(len(frames) for frames, _ in cached.values())
    progress = _progress(total, enabled=bool(cfg.progress))
    summary: dict[str, Any] = {"dataset": spec.name, "sequences": {}}
    try:
        for name in names:
            frames, _ = cached[name]
            tracks = track_sequence(_advance(frames, progress), config)
            frame_names = [f.frame for f in frames]
            write_mots_sequence(out, name, frame_names, tracks, spec)
            if semantic_dir is not None:
                fuse_sequence(semantic_dir, name, frame_names, tracks, spec, out / STEP_DIR, **fusion_kwargs)
            summary["sequences"][name] = {
                "frames": len(frames),
                "tracks": len({o.track_id for objects in tracks for o in objects}),
                "objects": sum(len(objects) for objects in tracks),
            }
    finally:
        if progress is not None:
            progress.close()
    config.to_yaml(out / "tracker_config.yaml")
    summary["tracker_config"] = config.to_dict()
    write_json(out / "summary.json", summary)
    written = "MOTS txt" + (" and STEP PNGs" if semantic_dir is not None else "")
    print(f"hvps track: {len(names)} sequence(s), {total} frame(s): {written} in {out}")
    return 0


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="track", file=sys.stderr, leave=False)


def _advance(frames: list[Any], progress: Any) -> Any:
    for frame in frames:
        yield frame
        if progress is not None:
            progress.update(1)
