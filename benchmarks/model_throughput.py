"""MOTS network speed: training step and per-frame streaming inference against plain Mask R-CNN.

Measures, for the four TA/SA variants of :class:`~hvps_lightning.models.mots.MOTSNet` and for
torchvision's ``MaskRCNN`` built on the same backbone (same ResNet + FPN, norm layers,
trainable stages), the same input size and the same RPN/RoI sampling settings:

* the median time of one training step (forward, backward, SGD step) on a batch of clips
  (MOTSNet) or of the clips' target frames (Mask R-CNN), with the same random targets;
* the median time per frame of streaming inference over a sequence
  (:class:`~hvps_lightning.models.mots.StreamingMOTS`: the backbone runs once per frame, TA
  reuses the cached features and per-frame reductions of the previous frames) against Mask
  R-CNN on each frame;

at each input size of ``--sizes`` (the default's small size, and 544x960, the mot_step
stage's training size).

Both models run with ``box_score_thresh=0`` so that every frame yields exactly
``--detections`` detections, and train with at least ``--roi-batch / 4`` GT objects per frame
so that the positive RoIs saturate: the mask (and embedding) heads do the same amount of
work whatever the random weights propose. Measurements go round-robin over the models and
use the process's CPU time by default, so that load from other processes counts for none.
Both get the DataModule's contract (normalised input, no resizing).

Targets: streaming inference <= 1.2x and a TA training step <= 2x the
plain model, at every size. Prints one JSON line with, per size, the ratios to the plain model
and the absolute medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from hvps_lightning.models.mots import MOTSNet, StreamingMOTS
from hvps_lightning.models.mots.net import BatchOnlyTransform, build_resnet_fpn

VARIANTS = {
    "ta1_sa1": (True, True),
    "ta1_sa0": (True, False),
    "ta0_sa1": (False, True),
    "ta0_sa0": (False, False),
}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "rpn_pre_nms_top_n_train": args.rpn_top_n,
        "rpn_post_nms_top_n_train": args.rpn_top_n // 2,
        "rpn_pre_nms_top_n_test": args.rpn_top_n,
        "rpn_post_nms_top_n_test": args.rpn_top_n // 2,
        "rpn_batch_size_per_image": args.rpn_batch,
        "box_batch_size_per_image": args.roi_batch,
        "box_score_thresh": 0.0,
        "box_detections_per_img": args.detections,
    }


def build_mots(args: argparse.Namespace, ta: bool, sa: bool) -> MOTSNet:
    torch.manual_seed(0)
    return MOTSNet(
        thing_ids=(4,),  # MOTChallenge-STEP's person
        backbone=args.backbone,
        trainable_layers=args.trainable_layers,
        backbone_norm="frozen",
        num_frames=args.frames,
        temporal_attention=ta,
        spatial_attention=sa,
        **_settings(args),
    )


def build_plain(args: argparse.Namespace) -> MaskRCNN:
    torch.manual_seed(0)
    settings = _settings(args)
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    model = MaskRCNN(
        build_resnet_fpn(args.backbone, args.trainable_layers, 256, frozen_norm=True),
        num_classes=2,
        rpn_anchor_generator=anchors,
        **settings,
    )
    model.transform = BatchOnlyTransform()  # same input contract as MOTSNet: no resize, no normalise
    return model


def random_targets(
    batch: int, height: int, width: int, objects: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for b in range(batch):
        boxes, masks = [], torch.zeros(objects, height, width, dtype=torch.uint8)
        for k in range(objects):
            w = int(torch.randint(width // 10, width // 4, (1,), generator=generator))
            h = int(torch.randint(height // 4, height // 2, (1,), generator=generator))
            x = int(torch.randint(0, width - w, (1,), generator=generator))
            y = int(torch.randint(0, height - h, (1,), generator=generator))
            boxes.append([x, y, x + w, y + h])
            masks[k, y : y + h, x : x + w] = 1
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.full((objects,), 4, dtype=torch.int64),  # person (spec id) for MOTSNet
                "masks": masks,
                "identities": torch.arange(objects) + 100 * (b // 2),  # two clips per sequence share ids
            }
        )
    return targets


#: the clock of the measurements (``--clock``); CPU time of the process by default, so that other
#: processes sharing the cores do not count (the benchmark runs one thread)
CLOCK: Callable[[], float] = time.process_time


class Candidate:
    """One model under test: a training step and a streaming session over a sequence."""

    def __init__(self, model: torch.nn.Module, inputs: dict[str, Any], plain: bool) -> None:
        self.model, self.inputs, self.plain = model, inputs, plain
        self.optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        self.train_times: list[float] = []
        self.frame_times: list[float] = []
        self.detections: list[int] = []

    def train_step(self) -> float:
        self.model.train()
        clips, targets = self.inputs["clips"], self.inputs["targets"]
        start = CLOCK()
        if self.plain:  # the clips' target frames, detector label 1
            losses = self.model(
                list(clips[:, -1]), [{**t, "labels": torch.ones_like(t["labels"])} for t in targets]
            )
        else:
            losses = self.model(clips, targets)
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()
        self.inputs["sync"]()
        return CLOCK() - start

    def start_stream(self) -> StreamingMOTS | None:
        """A fresh streaming session (None for the plain model, which has no frame cache)."""
        self.model.eval()
        return None if self.plain else StreamingMOTS(self.model)  # type: ignore[arg-type]

    @torch.no_grad()
    def stream_frame(self, frame: torch.Tensor, streamer: StreamingMOTS | None) -> float:
        start = CLOCK()
        if streamer is None:
            outputs = [self.model([frame])[0]]
        else:
            outputs = [det for _, det in streamer.push(frame, self.inputs["size"])]
        self.inputs["sync"]()
        elapsed = CLOCK() - start
        self.detections.extend(len(det["boxes"]) for det in outputs)
        return elapsed


def measure(candidates: dict[str, Candidate], sequence: torch.Tensor, args: argparse.Namespace) -> None:
    """Round-robin over the models (per step, per frame), so that slow phases of a shared machine
    hit all of them alike."""
    for repeat in range(args.warmup + args.repeats):
        for candidate in candidates.values():
            elapsed = candidate.train_step()
            if repeat >= args.warmup:
                candidate.train_times.append(elapsed)
    for repeat in range(args.warmup + args.repeats):
        streams = {name: candidate.start_stream() for name, candidate in candidates.items()}
        for index, frame in enumerate(sequence):
            for name, candidate in candidates.items():
                elapsed = candidate.stream_frame(frame, streams[name])
                # the first T - 1 frames fill the cache (a sequence start); count the steady state
                if repeat >= args.warmup and index >= args.frames - 1:
                    candidate.frame_times.append(elapsed)


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in seconds.items()}


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width)


def run_size(
    args: argparse.Namespace, device: torch.device, height: int, width: int
) -> dict[str, Any]:
    """Measure every model at one input size; the ratios and medians of that size."""
    generator = torch.Generator().manual_seed(0)
    inputs: dict[str, Any] = {
        "device": device,
        "sync": torch.cuda.synchronize if device.type == "cuda" else (lambda: None),
        "clips": torch.randn(args.batch, args.frames, 3, height, width, generator=generator).to(device),
        "targets": [
            {k: v.to(device) for k, v in t.items()}
            for t in random_targets(args.batch, height, width, args.objects, seed=1)
        ],
        "sequence": torch.randn(args.stream_frames, 3, height, width, generator=generator).to(device),
        "size": (height, width),
    }
    candidates = {"plain_maskrcnn": Candidate(build_plain(args).to(device), inputs, plain=True)}
    for name, (ta, sa) in VARIANTS.items():
        candidates[name] = Candidate(build_mots(args, ta, sa).to(device), inputs, plain=False)
    measure(candidates, inputs["sequence"], args)
    train_s = {name: statistics.median(c.train_times) for name, c in candidates.items()}
    stream_s = {name: statistics.median(c.frame_times) for name, c in candidates.items()}
    base_train, base_stream = train_s.pop("plain_maskrcnn"), stream_s.pop("plain_maskrcnn")
    return {
        "train_step_ratio": {k: round(v / base_train, 3) for k, v in train_s.items()},
        "stream_frame_ratio": {k: round(v / base_stream, 3) for k, v in stream_s.items()},
        "train_step_median_s": _rounded({"plain_maskrcnn": base_train, **train_s}),
        "stream_frame_median_s": _rounded({"plain_maskrcnn": base_stream, **stream_s}),
        "min_detections_per_frame": {name: min(c.detections) for name, c in candidates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", default="resnet18", choices=("resnet18", "resnet34", "resnet50", "resnet101")
    )
    parser.add_argument(
        "--sizes", default="160x256,544x960", help="input sizes HxW, comma-separated (each measured in turn)"
    )
    parser.add_argument("--batch", type=int, default=2, help="clips per training batch")
    parser.add_argument("--frames", type=int, default=3, help="clip length T")
    parser.add_argument("--objects", type=int, default=8, help="GT objects per frame")
    parser.add_argument("--trainable-layers", type=int, default=3)
    parser.add_argument("--rpn-top-n", type=int, default=300)
    parser.add_argument("--rpn-batch", type=int, default=128)
    parser.add_argument(
        "--roi-batch",
        type=int,
        default=32,
        help="RoIs sampled per image; a quarter may be positive, so with --objects >= roi-batch / 4 every "
        "model trains its mask and embedding heads on the same number of RoIs (the GT boxes are proposals)",
    )
    parser.add_argument("--detections", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--stream-frames", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock",
        choices=("process", "wall"),
        default=None,
        help="process CPU time (default on CPU: immune to other load) or wall time (default on GPU)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = args.clock or ("wall" if device.type == "cuda" else "process")
    global CLOCK
    CLOCK = time.perf_counter if clock == "wall" else time.process_time
    sizes = [parse_size(text) for text in args.sizes.split(",")]
    results = {f"{h}x{w}": run_size(args, device, h, w) for h, w in sizes}
    stream_ratios = [r for size in results.values() for r in size["stream_frame_ratio"].values()]
    ta_train_ratios = [r for size in results.values() for k, r in size["train_step_ratio"].items()
                       if k.startswith("ta1")]  # fmt: skip
    result = {
        "benchmark": "model_throughput",
        "device": str(device),
        "threads": args.threads,
        "clock": clock,
        "config": {
            "backbone": args.backbone,
            "batch_clips": args.batch,
            "clip_length": args.frames,
            "trainable_layers": args.trainable_layers,
            "detections_per_frame": args.detections,
            "repeats": args.repeats,
            "stream_frames": args.stream_frames,
        },
        "sizes": results,
        "targets": {"stream_frame_ratio_max": 1.2, "train_step_ratio_with_ta_max": 2.0},
        "targets_met": {
            "stream": all(r <= 1.2 for r in stream_ratios),
            "train_with_ta": all(r <= 2.0 for r in ta_train_ratios),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
