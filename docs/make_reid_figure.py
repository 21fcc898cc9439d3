r"""Draw the README's re-identification figure: one person before, during and after an occlusion.

Tracks a sequence of a detection cache twice, with the previous release's config
(the shipped config ``tracker/previous_release``) and with the defaults, and picks the person the
defaults re-identify after the longest gap that the previous release gave a new id. The figure
has one row per config and three panels (last frame before the gap, the middle of the gap,
first frame after it), drawn with :func:`hvps_lightning.viz.overlay.overlay_tracks`; the
person's mask carries its track id, and a box marks it.

Usage::

    python docs/make_reid_figure.py --detections outputs/demo/cache/detections \\
        --images data/demo/motchallenge_step/images/train --sequence 0002 --out docs/images/reid.png

Without a detection cache, ``--from-gt data/demo/motchallenge_step/instances_txt/train`` simulates
the sequence's detections from its MOTS ground truth (misses, jitter, and hard look-alike
embeddings from :func:`hvps_lightning.data.synthetic.tracking_workloads.look_alike_prototypes`).

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
from hvps_lightning.formats.detection_cache import read_detection_cache
from hvps_lightning.io import CONFIGS_DIR, atomic_path
from hvps_lightning.structures.detections import TrackedObject
from hvps_lightning.tracking.config import TrackerConfig
from hvps_lightning.tracking.tracker import track_sequence
from hvps_lightning.viz.overlay import overlay_tracks

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = CONFIGS_DIR / "tracker" / "previous_release.yaml"


def find_reidentified(
    new: list[list[TrackedObject]], old: list[list[TrackedObject]], min_gap: int
) -> tuple[int, int, int, int] | None:
    """(track id, a frame before the gap, its middle, a frame after it) of the best example, or None.

    Only people seen whole enough on both sides of the gap count (boxes at least 15% of the
    image high and a quarter as wide as high). Best: a gap after which the previous release's
    id of the same detection changed, then the longest gap.
    """
    seen: dict[int, list[tuple[int, TrackedObject]]] = {}  # track id -> (frame, object), in order
    for index, objects in enumerate(new):
        for obj in objects:
            seen.setdefault(obj.track_id, []).append((index, obj))
    old_id = {(i, o.detection_index): o.track_id for i, objects in enumerate(old) for o in objects}
    best_key: tuple[int, float] | None = None
    best: tuple[int, int, int, int] | None = None
    for track_id, frames in seen.items():
        for position, ((before, _), (after, _)) in enumerate(itertools.pairwise(frames)):
            gap = after - before - 1
            if gap < min_gap:
                continue
            # Show the person where it is seen largest within 15 frames of the gap on each side
            # (next to the gap it is half hidden).
            side_before = [(i, o) for i, o in frames[: position + 1] if i >= before - 15]
            side_after = [(i, o) for i, o in frames[position + 1 :] if i <= after + 15]
            picks = [max(side, key=lambda item: float(np.prod(item[1].box[2:] - item[1].box[:2])))
                     for side in (side_before, side_after)]  # fmt: skip
            height = int(picks[0][1].rle["size"][0])
            sizes = [o.box[2:] - o.box[:2] for _, o in picks]
            if any(h < 0.15 * height or w < 0.25 * h for w, h in sizes):
                continue
            (first_frame, first), (second_frame, second) = picks
            changed = old_id.get((first_frame, first.detection_index)) != old_id.get(
                (second_frame, second.detection_index)
            )
            key = (int(changed), float(gap))
            if best_key is None or key > best_key:
                best_key, best = key, (track_id, first_frame, (before + after) // 2, second_frame)
    return best


def simulated_from_gt(mots_txt: Path, image_folder: Path) -> list:
    """Detections simulated from a sequence's MOTS ground truth, with look-alike embeddings."""
    from hvps_lightning.data.synthetic.detections import gt_frames_from_mots, simulate_detections
    from hvps_lightning.data.synthetic.tracking_workloads import look_alike_prototypes
    from hvps_lightning.formats import read_mots_txt

    names = sorted(p.stem for p in image_folder.glob("*.png"))
    if not names:
        raise HVPSError(f"{image_folder}: no <frame>.png images")
    gt = gt_frames_from_mots(read_mots_txt(mots_txt), {2: 4}, names)
    identities = sorted({int(i) for frame in gt for i in frame.identities})
    prototypes = look_alike_prototypes(identities, seed=1)
    return simulate_detections(
        gt, seed=1, drop_rate=0.05, box_jitter=0.04, embedding_noise=0.35, prototypes=prototypes
    )


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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--detections", type=Path, help="detection cache folder")
    source.add_argument(
        "--from-gt", type=Path, help="folder of <sequence>.txt MOTS ground truth to simulate from"
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of <sequence>/<frame>.png images")
    parser.add_argument("--sequence", type=str, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "reid.png")
    parser.add_argument("--min-gap", type=int, default=5, help="shortest occlusion (frames) worth showing")
    parser.add_argument("--panel-width", type=int, default=360)
    args = parser.parse_args()

    if args.detections is not None:
        frames, _ = read_detection_cache(args.detections, args.sequence)
    else:
        frames = simulated_from_gt(args.from_gt / f"{args.sequence}.txt", args.images / args.sequence)
    configs = {"previous release": TrackerConfig.from_yaml(PREVIOUS), "this release": TrackerConfig()}
    tracks = {name: track_sequence(frames, config) for name, config in configs.items()}
    found = find_reidentified(tracks["this release"], tracks["previous release"], args.min_gap)
    if found is None:
        raise HVPSError(
            f"--sequence {args.sequence}: no track reappears after a gap of {args.min_gap}+ frames"
        )
    track_id, *shown = found
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
    # A palette of 128 colours keeps the README's PNG small (the scene textures compress badly).
    from PIL import Image

    small = Image.fromarray(figure).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    with atomic_path(args.out) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    names = [frames[i].frame for i in shown]
    print(json.dumps({"track_id": track_id, "frames": names, "ids": ids, "out": str(args.out)}))


if __name__ == "__main__":
    try:
        main()
    except HVPSError as error:
        raise SystemExit(f"make_reid_figure: {error}") from None
