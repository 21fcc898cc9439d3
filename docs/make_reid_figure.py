r"""Draw the README's re-identification figure: one person before, during and after an occlusion.

Tracks a sequence of a detection cache twice, with the previous release's config
(``experiments/tracker/previous_release.yaml``) and with the defaults, and picks the person the
defaults re-identify after the longest gap that the previous release gave a new id. The figure
has one row per config and three panels (last frame before the gap, the middle of the gap,
first frame after it), drawn with :func:`hvps_lightning.viz.overlay.overlay_tracks`; the
person's mask carries its track id, and a box marks it.

Usage::

    python docs/make_reid_figure.py --detections outputs/demo/cache/detections \\
        --images data/demo/motchallenge_step/images/train --sequence 0002 --out docs/images/reid.png

Prints one JSON line: the frames, the track ids of each config and the output path.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import cv2
import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import atomic_path
from hvps_lightning.tracking.cache import read_detection_cache
from hvps_lightning.tracking.config import TrackerConfig
from hvps_lightning.tracking.tracker import TrackedObject, track_sequence
from hvps_lightning.viz.overlay import overlay_tracks

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = ROOT / "experiments" / "tracker" / "previous_release.yaml"


def find_reidentified(
    new: list[list[TrackedObject]], old: list[list[TrackedObject]], min_gap: int
) -> tuple[int, int, int] | None:
    """(track id, last frame before the gap, first frame after it) of the best example, or None.

    Best: the longest gap after which the previous release's id of the same detection changed.
    """
    seen: dict[int, list[tuple[int, int]]] = {}
    for index, objects in enumerate(new):
        for obj in objects:
            seen.setdefault(obj.track_id, []).append((index, obj.detection_index))
    old_id = {(i, o.detection_index): o.track_id for i, objects in enumerate(old) for o in objects}
    best_key: tuple[int, int] | None = None
    best: tuple[int, int, int] | None = None
    for track_id, frames in seen.items():
        for (before, det_before), (after, det_after) in itertools.pairwise(frames):
            gap = after - before - 1
            if gap < min_gap:
                continue
            changed = old_id.get((before, det_before)) != old_id.get((after, det_after))
            key = (int(changed), gap)
            if best_key is None or key > best_key:
                best_key, best = key, (track_id, before, after)
    return best


def panel(
    image: np.ndarray, objects: list[TrackedObject], track_id: int, width: int, caption: str
) -> np.ndarray:
    """One frame's overlay, the person boxed, scaled to ``width`` with a caption bar."""
    canvas = overlay_tracks(image, objects)
    for obj in objects:
        if obj.track_id == track_id:
            x1, y1, x2, y2 = (int(v) for v in obj.box)
            cv2.rectangle(canvas, (x1 - 4, y1 - 4), (x2 + 4, y2 + 4), (255, 255, 0), 4)
    scale = width / canvas.shape[1]
    canvas = cv2.resize(canvas, (width, round(canvas.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.rectangle(canvas, (0, 0), (width, 26), (0, 0, 0), -1)
    cv2.putText(canvas, caption, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def main() -> None:
    """Track, pick the example, draw and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=Path, required=True, help="detection cache folder")
    parser.add_argument("--images", type=Path, required=True, help="folder of <sequence>/<frame>.png images")
    parser.add_argument("--sequence", type=str, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "reid.png")
    parser.add_argument("--min-gap", type=int, default=5, help="shortest occlusion (frames) worth showing")
    parser.add_argument("--panel-width", type=int, default=400)
    args = parser.parse_args()

    frames, _ = read_detection_cache(args.detections, args.sequence)
    configs = {"previous release": TrackerConfig.from_yaml(PREVIOUS), "this release": TrackerConfig()}
    tracks = {name: track_sequence(frames, config) for name, config in configs.items()}
    found = find_reidentified(tracks["this release"], tracks["previous release"], args.min_gap)
    if found is None:
        raise HVPSError(
            f"--sequence {args.sequence}: no track reappears after a gap of {args.min_gap}+ frames"
        )
    track_id, before, after = found
    shown = [before, (before + after) // 2, after]
    rows, ids = [], {}
    for name, result in tracks.items():
        panels = []
        for index in shown:
            path = args.images / args.sequence / f"{frames[index].frame}.png"
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise HVPSError(f"{path}: not a readable image")
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            detection = {o.detection_index for o in tracks["this release"][index] if o.track_id == track_id}
            person = [o for o in result[index] if o.detection_index in detection]
            person_id = person[0].track_id if person else -1
            ids.setdefault(name, []).append(person_id)
            label = "hidden" if index == shown[1] else f"id {person_id}"
            caption = f"{name}: frame {frames[index].frame}, {label}"
            panels.append(panel(image, result[index], person_id, args.panel_width, caption))
        rows.append(np.concatenate(panels, axis=1))
    figure = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:  # the temporary file keeps the .png suffix cv2 needs
        if not cv2.imwrite(
            str(tmp), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
        ):
            raise HVPSError(f"{args.out}: could not write the figure")
    names = [frames[i].frame for i in shown]
    print(json.dumps({"track_id": track_id, "frames": names, "ids": ids, "out": str(args.out)}))


if __name__ == "__main__":
    main()
