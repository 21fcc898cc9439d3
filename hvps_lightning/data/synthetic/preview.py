"""The README picture of ``hvps synth``: a generated frame next to its panoptic overlay.

Regenerate it with ``python -m hvps_lightning.data.synthetic.preview docs/images/synth_frame.png``.
"""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import cv2
import numpy as np

from hvps_lightning.data.synthetic.generate import sequence_rng
from hvps_lightning.data.synthetic.scene import PRESETS, VOID, SynthFrame, render_sequence
from hvps_lightning.io import atomic_path
from hvps_lightning.structures.specs import get_spec


def track_color(track_id: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour per track id (golden-ratio hue steps, magenta left out).

    Magenta and purple are the sidewalk and road colours of the Cityscapes palette.
    """
    hue = 0.72 * ((track_id * 0.618033988749895) % 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def panoptic_overlay(frame: SynthFrame, dataset: str, alpha: float = 0.6) -> np.ndarray:
    """Blend class colours (stuff), one colour per track id (instances) and white void over the image."""
    spec = get_spec(dataset)
    palette = np.zeros((256, 3), np.float32)
    palette[: spec.num_classes] = spec.colors
    palette[VOID] = (255, 255, 255)
    blended = (1 - alpha) * frame.image.astype(np.float32) + alpha * palette[frame.semantic]
    overlay = np.clip(blended, 0, 255).astype(np.uint8)
    for seg in frame.segments:
        if seg.instance_id:
            overlay[seg.mask] = (
                0.25 * frame.image[seg.mask] + 0.75 * np.array(track_color(seg.instance_id))
            ).astype(np.uint8)
    return overlay


def preview(
    preset: str = "motchallenge_step",
    seed: int = 0,
    frame_index: int = 20,
    height: int = 192,
    width: int = 320,
    scale: float = 1.25,
) -> np.ndarray:
    """Render one frame of sequence 0 (as ``hvps synth`` would) and return image | overlay, labelled."""
    frames = render_sequence(PRESETS[preset], height, width, frame_index + 1, sequence_rng(preset, seed, 0))
    frame = list(frames)[frame_index]
    overlay = panoptic_overlay(frame, PRESETS[preset].dataset)
    size = (int(width * scale), int(height * scale))
    image = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
    overlay = cv2.resize(overlay, size, interpolation=cv2.INTER_NEAREST)
    for seg in frame.segments:  # outline and track id of each person
        if seg.instance_id:
            big = cv2.resize(seg.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(overlay, contours, -1, (0, 0, 0), 1)
            ys, xs = np.nonzero(seg.mask)
            org = (int(xs.mean() * scale) - 6, max(10, int(ys.min() * scale) - 3))
            for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                cv2.putText(
                    overlay,
                    str(seg.instance_id),
                    org,
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.4,
                    colour,
                    thickness,
                    cv2.LINE_AA,
                )
    gap = np.full((size[1], 4, 3), 255, np.uint8)
    return np.concatenate([image, gap, overlay], axis=1)


def save_preview(
    path: str | Path, preset: str = "motchallenge_step", seed: int = 0, frame_index: int = 20
) -> Path:
    """Write the picture to ``path`` (PNG) and return the path."""
    picture = preview(preset, seed, frame_index)
    # Highest zlib level: the picture lives in the repository, so bytes matter more than speed.
    ok, encoded = cv2.imencode(".png", picture[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m hvps_lightning.data.synthetic.preview OUT.png [--preset P] [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", default="motchallenge_step", choices=list(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame", type=int, default=20)
    args = parser.parse_args(argv)
    path = save_preview(args.out, args.preset, args.seed, args.frame)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
