"""``hvps infer``'s pipeline against the sum of its parts run alone, on the same frames.

The pipeline (:class:`~hvps_lightning.inference.Pipeline`, writing STEP PNGs and MOTS txt as
``hvps infer`` does) runs over a generated street sequence at ``--size`` (384x640 by default)
with the demo's networks (``configs/demo/{mots,semantic}.yaml``: ResNet-18 FPN-64 Mask R-CNN
with TA and SA, EfficientPS-style EfficientNet-B0; random weights, or a bundle's with
``--model``). Its parts then run alone on the same frames, each on the previous part's outputs
computed beforehand:

* ``prepare``: resizing and normalisation of the frames (the DataModule's work in ``hvps predict``);
* ``mots``: :class:`~hvps_lightning.models.mots.StreamingMOTS` over the normalised frames, outputs
  turned into ``FrameDetections`` (``predict_step``'s conversion);
* ``semantic``: the semantic network on batches of ``--batch-frames``, logits turned into class maps;
* ``tracker``: :func:`~hvps_lightning.tracking.track_sequence` over the detections (``hvps track``);
* ``fusion``: :func:`~hvps_lightning.panoptic.fusion.fuse_panoptic` of each frame's tracks and map;
* ``writing``: the STEP PNGs and the MOTS txt.

The overhead is ``pipeline time / sum of parts - 1`` (target <= 10 %).
Measurements alternate pipeline and parts, ``--repeats`` times after a warm-up, and take the
medians. On CPU they run on one thread and count the process's CPU time by default (other
processes sharing the cores count for none); ``--device cuda`` counts wall time with the device
synchronised. Camera motion is off in both (no part of it runs alone).
The last line printed is one JSON object: ``{"frames_per_s", "parts_frames_per_s", "overhead", ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hvps_lightning.data.loaders import read_image, resize_to
from hvps_lightning.data.synthetic.generate import generate_dataset
from hvps_lightning.data.transforms import normalize_frames
from hvps_lightning.formats.step_png import write_step_png
from hvps_lightning.formats.tracked import write_mots_sequence
from hvps_lightning.inference import InferenceModel, Pipeline
from hvps_lightning.inference.outputs import OutputWriter
from hvps_lightning.models.mots import MOTSNet, StreamingMOTS
from hvps_lightning.models.mots.outputs import to_frame_detections
from hvps_lightning.models.semantic import SemanticNet
from hvps_lightning.models.semantic.outputs import semantic_map
from hvps_lightning.panoptic.fusion import fuse_panoptic
from hvps_lightning.structures.specs import get_spec
from hvps_lightning.tracking.tracker import TrackerConfig, track_sequence

ROOT = Path(__file__).resolve().parents[1]
#: where the demo's network sizes live (the package's configs, or the older experiments/ folder)
DEMO_CONFIGS = (ROOT / "hvps_lightning" / "configs" / "demo", ROOT / "experiments" / "demo")
PARTS = ("prepare", "mots", "semantic", "tracker", "fusion", "writing")


def demo_net_args(name: str) -> dict[str, Any]:
    """The ``net.init_args`` of the demo's ``<name>.yaml`` (the CPU-sized networks)."""
    for folder in DEMO_CONFIGS:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return dict(yaml.safe_load(path.read_text())["model"]["init_args"]["net"]["init_args"])
    raise SystemExit(f"no demo config {name}.yaml in {', '.join(map(str, DEMO_CONFIGS))}")


def demo_model() -> InferenceModel:
    """Random-weight networks of the demo's sizes, for MOTChallenge-STEP.

    Their detections score about 0.05-0.6; the tracker takes them from 0.05 on, so that it,
    the fusion and the MOTS txt have objects to work on (a few dozen per frame).
    """
    spec = get_spec("motchallenge_step")
    torch.manual_seed(0)
    mots = MOTSNet(thing_ids=spec.thing_ids, **demo_net_args("mots"))
    semantic = SemanticNet(num_classes=spec.num_classes, **demo_net_args("semantic"))
    tracker = TrackerConfig(score_threshold=0.05, birth_score_threshold=0.05)
    return InferenceModel(spec=spec, mots=mots, semantic=semantic, tracker=tracker)


def street_frames(count: int, size: tuple[int, int], folder: Path) -> list[np.ndarray]:
    """``count`` frames of a generated MOTChallenge-STEP street sequence at ``size``."""
    root = folder / "synth"
    generate_dataset("motchallenge_step", root, sequences=1, frames=count, height=size[0], width=size[1],
                     progress=False)  # fmt: skip
    paths = sorted((root / "images").rglob("*.png"))[:count]
    return [read_image(p) for p in paths]


class Clock:
    """Process CPU time, or wall time with the device synchronised."""

    def __init__(self, kind: str, device: torch.device) -> None:
        self.kind = kind
        self.sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.process_time() if self.kind == "process" else time.perf_counter()


def run_pipeline(pipe: Pipeline, frames: list[np.ndarray], out: Path, clock: Clock) -> float:
    """``hvps infer``'s loop: pipeline results written as STEP PNGs and MOTS txt; seconds."""
    start = clock()
    writer = OutputWriter(out, "0001", pipe.spec, ("step", "mots"), fps=10.0)
    for result in pipe(frames):
        writer.write(result)
    writer.close()
    return clock() - start


def run_parts(
    model: InferenceModel, frames: list[np.ndarray], out: Path, clock: Clock, device: torch.device, batch: int
) -> dict[str, float]:
    """Each part alone on the outputs of the one before (computed first); seconds per part."""
    seconds = {}
    size = frames[0].shape[:2]
    names = [f"{i:06d}" for i in range(len(frames))]
    with torch.inference_mode():
        start = clock()
        normalised = [
            normalize_frames(np.stack([resize_to(f, size) for f in frames[i : i + batch]])).to(device)
            for i in range(0, len(frames), batch)
        ]
        seconds["prepare"] = clock() - start

        start = clock()
        stream = StreamingMOTS(model.mots, target_index=model.target_index)
        outputs = [out for chunk in normalised for frame in chunk for _, out in stream.push(frame, size)]
        outputs += [out for _, out in stream.flush()]
        threshold = model.mask_threshold
        detections = [to_frame_detections(o, n, threshold) for o, n in zip(outputs, names, strict=True)]
        seconds["mots"] = clock() - start

        start = clock()
        maps = [semantic_map(logits, size) for chunk in normalised for logits in model.semantic(chunk)]
        seconds["semantic"] = clock() - start

    start = clock()
    tracks = track_sequence(detections, model.tracker)
    seconds["tracker"] = clock() - start

    spec = model.spec
    start = clock()
    fused = [
        fuse_panoptic(semantic, [o for o in objects if o.label in spec.thing_ids], spec, model.fusion_rule)
        for semantic, objects in zip(maps, tracks, strict=True)
    ]
    seconds["fusion"] = clock() - start

    start = clock()
    for name, frame in zip(names, fused, strict=True):
        write_step_png(out / "step" / "0001" / f"{name}.png", *frame)
    write_mots_sequence(out, "0001", names, tracks, spec)
    seconds["writing"] = clock() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x640", help="frame size HxW")
    parser.add_argument("--frames", type=int, default=24, help="frames of the sequence")
    parser.add_argument("--batch-frames", type=int, default=4, help="semantic-network batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="a bundle (default: the demo's sizes, random weights)")
    parser.add_argument("--clock", choices=("process", "wall"), default=None,
                        help="process CPU time (default on CPU) or wall time (default on CUDA)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = Clock(args.clock or ("wall" if device.type == "cuda" else "process"), device)
    height, _, width = args.size.partition("x")
    size = (int(height), int(width))
    model = InferenceModel.load(args.model) if args.model else demo_model()
    pipe = Pipeline(model, device=device, batch_frames=args.batch_frames, camera_motion=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = street_frames(args.frames, size, folder)
        pipeline_s: list[float] = []
        parts_s: dict[str, list[float]] = {part: [] for part in PARTS}
        for repeat in range(args.warmup + args.repeats):
            elapsed = run_pipeline(pipe, frames, folder / f"pipeline{repeat}", clock)
            parts = run_parts(model, frames, folder / f"parts{repeat}", clock, pipe.device, args.batch_frames)
            if repeat >= args.warmup:
                pipeline_s.append(elapsed)
                for part, seconds in parts.items():
                    parts_s[part].append(seconds)
        objects = sum(1 for line in (folder / "pipeline0" / "mots" / "0001.txt").open())
    pipeline_median = statistics.median(pipeline_s)
    parts_median = {part: statistics.median(values) for part, values in parts_s.items()}
    parts_total = sum(parts_median.values())
    overhead = pipeline_median / parts_total - 1.0
    print(
        json.dumps(
            {
                "frames_per_s": round(args.frames / pipeline_median, 3),
                "parts_frames_per_s": round(args.frames / parts_total, 3),
                "overhead": round(overhead, 4),
                "benchmark": "infer_throughput",
                "target_overhead_max": 0.10,
                "target_met": overhead <= 0.10,
                "device": str(device),
                "threads": args.threads,
                "clock": clock.kind,
                "size": list(size),
                "frames": args.frames,
                "repeats": args.repeats,
                "tracked_objects": objects,
                "parts_s": {part: round(value, 4) for part, value in parts_median.items()},
                "pipeline_s": round(pipeline_median, 4),
                "model": args.model or "demo network sizes, random weights",
            }
        )
    )


if __name__ == "__main__":
    main()
