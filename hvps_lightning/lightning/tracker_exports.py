"""What the offline tracker callback writes and draws besides its metrics.

Per evaluation: the tracks as MOTS txt, the fused frames as STEP PNGs and the detection cache
(:func:`write_exports`); overlays of the tracks on the frames (:func:`draw_overlays`), as GIFs
(:func:`write_overlay_gifs`) and sent to the logger (:func:`log_overlay`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.formats.detection_cache import write_detection_cache
from hvps_lightning.formats.png import read_png
from hvps_lightning.formats.step_png import write_step_png
from hvps_lightning.formats.tracked import STEP_DIR, write_mots_sequence
from hvps_lightning.structures.detections import FrameDetections, TrackedObject
from hvps_lightning.structures.panoptic import PanopticFrame
from hvps_lightning.structures.specs import DatasetSpec
from hvps_lightning.viz import overlay_tracks, write_gif

#: sequence -> (frame names, tracked objects per frame)
Tracks = Mapping[str, tuple[Sequence[str], Sequence[Sequence[TrackedObject]]]]


def write_exports(
    folder: Path,
    tracks: Tracks,
    fused_frames: Mapping[str, Sequence[tuple[str, PanopticFrame]]],
    detections: Mapping[str, list[FrameDetections]] | None,
    spec: DatasetSpec,
) -> None:
    """MOTS txt per sequence, STEP PNGs of the fused frames and, if given, the detection cache."""
    for sequence, (names, objects) in tracks.items():
        write_mots_sequence(folder, sequence, names, objects, spec)
    for sequence, fused in fused_frames.items():
        for frame, panoptic in fused:
            write_step_png(folder / STEP_DIR / sequence / f"{frame}.png", *panoptic)
    for sequence, frames in (detections or {}).items():
        write_detection_cache(folder / "detections", sequence, frames, {"dataset": spec.name})


def draw_overlays(
    tracks: Tracks, image_paths: Mapping[tuple[str, str], str], max_frames: int
) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """Per sequence, the first ``max_frames`` frames with their tracks drawn, and the frame names.

    A frame without an image is drawn on black at its masks' size; a sequence whose frames end
    up of different sizes, or without any frame to draw, is left out.
    """
    drawn: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for sequence, (names, objects_per_frame) in tracks.items():
        images, shown = [], []
        for name, objects in list(zip(names, objects_per_frame, strict=True))[:max_frames]:
            path = image_paths.get((sequence, name))
            image = read_png(path) if path and Path(path).is_file() else None
            size = tuple(objects[0].rle["size"]) if objects else None
            if image is None and size is None:
                continue
            images.append(overlay_tracks(image, objects, size=size))
            shown.append(name)
        if images and len({i.shape for i in images}) == 1:
            drawn[sequence] = (images, shown)
    return drawn


def write_overlay_gifs(
    overlays: Mapping[str, tuple[list[np.ndarray], list[str]]], folder: Path | None
) -> dict[str, Path]:
    """One GIF per sequence, in ``folder`` (kept) or a scratch folder (for the logger only)."""
    folder = folder if folder is not None else Path(tempfile.mkdtemp(prefix="hvps-overlays-"))
    return {
        sequence: write_gif(folder / f"{sequence}.gif", images) for sequence, (images, _) in overlays.items()
    }


def log_overlay(
    logger: Any, prefix: str, sequence: str, overlay: tuple[list[np.ndarray], list[str]], gif: Path, step: int
) -> None:
    """Send three frames (first, middle, last) and the GIF of a sequence to the image logger."""
    images, shown = overlay
    picks = sorted({0, len(images) // 2, len(images) - 1})
    logger.log_images(
        f"{prefix}/tracks/{sequence}", [images[i] for i in picks], step, [shown[i] for i in picks]
    )
    logger.log_video(f"{prefix}/tracks_video/{sequence}", gif, step)
