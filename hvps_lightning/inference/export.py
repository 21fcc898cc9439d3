"""Export of the two networks (TorchScript or ONNX), each checked against the eager network.

What is exported, at one input size (H, W):

* ``semantic``: normalised frames (B, 3, H, W) -> logits (B, C, H, W);
* ``mots_frame``: the MOTS network's per-frame forward: the window of the target frame and its
  T - 1 predecessors (T, 3, H, W) -> ``boxes`` (N, 4, input pixels), ``scores`` (N),
  ``labels`` (N, class ids of the spec), ``masks`` (N, 1, H, W probabilities), ``embeddings``
  (N, D). Each call runs the backbone on all T frames: the exported graph has no feature cache
  (``hvps infer``'s streaming reuse of the last T - 1 frames' features stays in PyTorch).

``export.json`` beside them says how to feed and read them (input size, normalisation, window,
class names) and what the check measured.

Which exporter, and why (torch 2.x, torchvision's detection ops):

* **ONNX, semantic**: ``torch.onnx.export(dynamo=True)`` (``torch.export``), batch and image
  size dynamic.
* **ONNX, MOTS**: ``torch.export`` cannot capture torchvision's detection post-processing:
  NMS returns a data-dependent number of boxes and ``batched_nms`` branches on it
  (``GuardOnDataDependentSymNode`` in ``_batched_nms_coordinate_trick``). The TorchScript-based
  exporter (``dynamo=False``, opset 17) traces torchvision's ONNX-aware code paths
  (``torchvision._is_tracing()``: NMS, RoIAlign and mask pasting as ONNX loops) and gives a graph
  whose number of detections varies with the input. One change makes the project's heads
  traceable: the embedding head's adaptive 7 -> 3 average pool, which that exporter cannot size
  on a dynamic number of RoIs, is swapped in the exported copy for the fixed 3x3 stride-2 pool
  that computes the same windows (checked equal before export).
* **TorchScript**: ``torch.jit.trace`` of both (``torch.jit.script`` fails on torchvision's
  detection classes as subclassed here). Tracing records the detection ops, so the number of
  detections varies with the input too; the input size is fixed at export. PyTorch deprecates
  TorchScript (``torch.jit.load`` warns); prefer ONNX where the runtime allows.

The check runs eager and exported networks on the same sample (frames from ``sample`` or a
fixed random input) and compares every output within ``atol + rtol * |eager|``; ONNX files are
run with onnxruntime. A blank window is also run through the exported MOTS graph (no
detections, for a trained network). Both exporters trace the MOTS network on the sample's first
window, which must hold detections: a graph traced on an empty frame takes NMS's early return
for good.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hvps_lightning import __version__
from hvps_lightning.data.loaders import resize_to
from hvps_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_frames
from hvps_lightning.errors import HVPSError
from hvps_lightning.inference.frames import open_frames
from hvps_lightning.inference.model import InferenceModel, Size
from hvps_lightning.io import atomic_path, write_json
from hvps_lightning.models.mots.net import MOTSNet

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
MOTS_OUTPUTS: tuple[str, ...] = ("boxes", "scores", "labels", "masks", "embeddings")
#: the RoI grid the embedding head sees (mask RoIs are 14 x 14, its first convolution halves them)
EMBEDDING_GRID = 7


class MOTSFrame(nn.Module):
    """The MOTS network's per-frame forward as a module with tensor outputs (see the module docstring)."""

    def __init__(self, net: MOTSNet, target_index: int) -> None:
        super().__init__()
        self.net = net
        self.target_index = int(target_index)

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Detections of frame ``target_index`` of a normalised window (T, 3, H, W)."""
        detections = self.net(clip[None], target_index=self.target_index)
        assert isinstance(detections, list)
        first = detections[0]
        return first["boxes"], first["scores"], first["labels"], first["masks"], first["embeddings"]


@dataclass
class Check:
    """The comparison of one exported network with the eager one.

    Attributes:
        network: ``semantic`` or ``mots_frame``.
        max_error: per output, the largest ``|exported - eager|``.
        tolerance: ``(atol, rtol)``.
        detections: per sample, detections compared (MOTS only).
    """

    network: str
    max_error: dict[str, float] = field(default_factory=dict)
    tolerance: tuple[float, float] = (1e-4, 1e-3)
    detections: list[int] = field(default_factory=list)


def _swap_embedding_pool(net: MOTSNet) -> None:
    """Replace the embedding head's adaptive average pool by the fixed pool of the same windows.

    On a 7 x 7 grid, ``AdaptiveAvgPool2d(3)`` averages rows/columns [0, 3), [2, 5), [4, 7): a
    3 x 3 pool of stride 2. The swap is checked on a random grid; another grid size is refused.
    """
    body = net.roi_heads.embedding_head.body
    for position, layer in enumerate(body):
        if isinstance(layer, nn.AdaptiveAvgPool2d):
            size = layer.output_size
            out = size if isinstance(size, int) else size[0]
            kernel = EMBEDDING_GRID - 2 * (out - 1) if out > 1 else EMBEDDING_GRID
            stride = 2 if out > 1 else 1
            fixed = nn.AvgPool2d(kernel, stride)
            grid = torch.randn(2, 3, EMBEDDING_GRID, EMBEDDING_GRID)
            if fixed(grid).shape != layer(grid).shape or not torch.allclose(
                fixed(grid), layer(grid), atol=1e-6
            ):
                raise HVPSError(
                    f"export: the embedding head pools to {size}, which no fixed pool reproduces on a "
                    f"{EMBEDDING_GRID}x{EMBEDDING_GRID} RoI grid; this network cannot be exported to ONNX"
                )
            body[position] = fixed


def _sample_frames(model: InferenceModel, size: Size, sample: str | Path | None, count: int) -> Tensor:
    """``count`` normalised frames (count, 3, H, W): the first frames of ``sample``, else fixed noise."""
    if sample is None:
        generator = np.random.default_rng(0)
        images = generator.integers(0, 256, (count, *size, 3), dtype=np.uint8)
    else:
        frames = []
        for frame in open_frames(sample, min_size=size):
            frames.append(resize_to(frame.image, size))
            if len(frames) == count:
                break
        while len(frames) < count:  # a short sample: repeat its last frame, as a sequence start does
            frames.append(frames[-1])
        images = np.stack(frames)
    return normalize_frames(images)


def _compare(name: str, eager: Sequence[Tensor], exported: Sequence[Any], check: Check, where: str) -> None:
    atol, rtol = check.tolerance
    for output, reference, value in zip(name.split(","), eager, exported, strict=True):
        value = torch.as_tensor(np.asarray(value))
        reference = reference.detach().cpu()
        if tuple(value.shape) != tuple(reference.shape):
            raise HVPSError(
                f"{where}: exported {output} has shape {tuple(value.shape)}, eager {tuple(reference.shape)}"
            )
        error = (value.double() - reference.double()).abs()
        worst = float(error.max()) if error.numel() else 0.0
        check.max_error[output] = max(check.max_error.get(output, 0.0), worst)
        if error.numel() and bool((error > atol + rtol * reference.double().abs()).any()):
            raise HVPSError(
                f"{where}: exported {output} differs from the eager network by up to {worst:.3g} "
                f"(tolerance {atol} + {rtol} * |value|)"
            )


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' progress prints and tracer warnings (the check reports what matters)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _onnx_session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its shape-annotation notices on data-dependent outputs are expected
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise HVPSError(
            f"--format onnx: needs {', '.join(missing)} (pip install onnx onnxscript onnxruntime); "
            "onnxruntime runs the check of the exported files"
        )


def export_semantic(model: InferenceModel, path: Path, fmt: str, frames: Tensor, check: Check) -> None:
    """Export the semantic network to ``path`` and check it on ``frames`` (batch of 1, then of all)."""
    net = copy.deepcopy(model.semantic).cpu().eval()
    batches = [frames[:1], frames]
    with torch.no_grad():
        eager = [net(batch) for batch in batches]
    where = f"export semantic ({fmt})"
    with atomic_path(path) as tmp:
        with _quiet(), torch.no_grad():
            if fmt == "onnx":
                batch = torch.export.Dim("batch", min=1, max=1024)
                # height and width stay dynamic through Dim.AUTO (the network pads to its stride)
                torch.onnx.export(
                    net,
                    (frames[:1],),
                    str(tmp),
                    dynamo=True,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_shapes={"images": {0: batch, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}},
                )
            else:
                torch.jit.save(torch.jit.trace(net, frames[:1]), str(tmp))
        if fmt == "onnx":
            session = _onnx_session(tmp)
            outputs = [session.run(None, {"images": batch.numpy()})[0] for batch in batches]
        else:
            traced = torch.jit.load(str(tmp))
            with torch.no_grad():
                outputs = [traced(batch) for batch in batches]
        for reference, output in zip(eager, outputs, strict=True):
            _compare("logits", [reference], [output], check, where)


def export_mots(model: InferenceModel, path: Path, fmt: str, clips: Sequence[Tensor], check: Check) -> None:
    """Export the MOTS network's per-frame forward to ``path``; check it on ``clips`` and an empty frame."""
    net = copy.deepcopy(model.mots).cpu().eval()
    if fmt == "onnx":
        _swap_embedding_pool(net)
    assert model.target_index is not None
    module = MOTSFrame(net, model.target_index).eval()
    reference_module = MOTSFrame(copy.deepcopy(model.mots).cpu().eval(), model.target_index).eval()
    where = f"export mots_frame ({fmt})"
    with torch.no_grad():
        eager = [reference_module(clip) for clip in clips]
    if len(eager[0][0]) == 0:
        # Tracing records the Python branches the sample takes; torchvision's NMS returns early on
        # no boxes, so a graph traced on an empty frame would never detect anything.
        raise HVPSError(
            f"{where}: the sample's first frame gives no detections to trace the detection ops with; "
            "pass --sample with frames that show people"
        )
    with atomic_path(path) as tmp:
        with _quiet(), torch.no_grad():
            if fmt == "onnx":
                torch.onnx.export(
                    module,
                    (clips[0],),
                    str(tmp),
                    dynamo=False,
                    opset_version=17,
                    input_names=["clip"],
                    output_names=list(MOTS_OUTPUTS),
                    dynamic_axes={name: {0: "detections"} for name in MOTS_OUTPUTS},
                )
            else:
                torch.jit.save(torch.jit.trace(module, clips[0], check_trace=False), str(tmp))
        if fmt == "onnx":
            session = _onnx_session(tmp)

            def run(clip: Tensor) -> list[Any]:
                return session.run(None, {"clip": clip.numpy()})
        else:
            traced = torch.jit.load(str(tmp))

            def run(clip: Tensor) -> list[Any]:
                with torch.no_grad():
                    return list(traced(clip))

        for clip, reference in zip(clips, eager, strict=True):
            output = run(clip)
            check.detections.append(int(reference[0].shape[0]))
            # the same detections in the same order: compare every output
            _compare(",".join(MOTS_OUTPUTS), reference, output, check, where)


def export_model(
    model: InferenceModel,
    out: str | Path,
    fmt: str,
    image_size: Size | None = None,
    sample: str | Path | None = None,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> dict[str, Any]:
    """Export both networks in ``fmt`` to ``out`` and check them (see the module docstring).

    Args:
        model: the networks.
        out: the output folder.
        fmt: ``onnx`` or ``torchscript``.
        image_size: (H, W) of the exported inputs (default: the size the networks were trained at).
        sample: a video, folder or glob whose first frames are the check's input (default: noise).
        atol: absolute tolerance of the check.
        rtol: relative tolerance of the check.

    Returns:
        What ``export.json`` holds.

    Raises:
        HVPSError: for an unknown format, a missing exporter package, no size to export at, or
            an exported network whose outputs differ from the eager one's.
    """
    if fmt not in EXPORT_FORMATS:
        raise HVPSError(f"--format {fmt}: expected one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    sizes = {s for s in (model.mots_image_size, model.semantic_image_size) if s is not None}
    if image_size is None:
        if len(sizes) != 1:
            raise HVPSError(
                "--image-size: required (the networks were trained at the frames' own size, or at two sizes; "
                "an exported graph has one input size)"
            )
        image_size = sizes.pop()
    size: Size = (int(image_size[0]), int(image_size[1]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_frames = model.mots.num_frames if model.mots.temporal_attention is not None else 1
    frames = _sample_frames(model, size, sample, max(2, num_frames + 1))
    # two windows of the sample (the first padded like a sequence start) and a blank one
    first = torch.stack([frames[0]] * num_frames)
    second = frames[1 : num_frames + 1] if num_frames > 1 else frames[1:2]
    blank = torch.zeros_like(first)
    checks = {
        "semantic": Check("semantic", tolerance=(atol, rtol)),
        "mots_frame": Check("mots_frame", tolerance=(atol, rtol)),
    }
    suffix = SUFFIX[fmt]
    export_semantic(model, out / f"semantic{suffix}", fmt, frames, checks["semantic"])
    export_mots(model, out / f"mots_frame{suffix}", fmt, [first, second, blank], checks["mots_frame"])
    spec = model.spec
    report = {
        "format": fmt,
        "exporter": {
            "semantic": "torch.onnx.export(dynamo=True)" if fmt == "onnx" else "torch.jit.trace",
            "mots_frame": "torch.onnx.export(dynamo=False, opset_version=17)"
            if fmt == "onnx"
            else "torch.jit.trace",
        },
        "written_by": __version__,
        "torch": torch.__version__,
        "files": {"semantic": f"semantic{suffix}", "mots_frame": f"mots_frame{suffix}"},
        "input": {
            "image_size": list(size),
            "layout": "RGB, resized to image_size (bilinear), (x / 255 - mean) / std, channels first",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "semantic": "images (B, 3, H, W)" + (", B/H/W dynamic" if fmt == "onnx" else ""),
            "mots_frame": f"clip ({num_frames}, 3, H, W): the target frame at index {model.target_index}, "
            "earlier frames before it (repeat the first frame at a sequence start)",
        },
        "outputs": {
            "semantic": "logits (B, C, H, W): argmax over C after resizing to the frame's size",
            "mots_frame": "boxes (N, 4) x1 y1 x2 y2 in input pixels, scores (N), labels (N) class ids, "
            "masks (N, 1, H, W) probabilities (threshold below), embeddings (N, D) L2-normalised",
        },
        "mask_threshold": model.mask_threshold,
        "dataset": {
            "name": spec.name,
            "class_names": list(spec.class_names),
            "thing_ids": list(spec.thing_ids),
        },
        "check": {
            name: {
                "max_abs_error": {k: float(f"{v:.3g}") for k, v in check.max_error.items()},
                "tolerance": {"atol": atol, "rtol": rtol},
                **({"detections_compared": check.detections} if check.detections else {}),
                "sample": str(sample) if sample is not None else "fixed random frames",
                "passed": True,
            }
            for name, check in checks.items()
        },
    }
    write_json(out / "export.json", report)
    return report
