"""STQ on every input layout, integer dtype and code path: identical numbers everywhere.

Layouts: (B, H, W, 2) pairs, a (semantic, instance) tuple, packed panoptic ids. Code paths:
NumPy arrays, CPU tensors through NumPy (the default), and CPU tensors through the torch path
that tensors on an accelerator take (``USE_NUMPY_ON_CPU = False``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stq_random import random_stq_frames
from torch.overrides import TorchFunctionMode

from hvps_lightning.metrics import STQ, STQAccumulator, functional_stq
from hvps_lightning.metrics.functional_stq import stq_batch_statistics
from hvps_lightning.metrics.stq_inputs import STQInputError, STQLabelSpace

CASES = json.loads((Path(__file__).parents[1] / "data" / "stq_published_cases.json").read_text())["cases"]

DTYPES = [torch.uint8, torch.int16, torch.uint16, torch.int32, torch.uint32, torch.int64]
LAYOUTS = ["pairs", "split", "packed"]
KINDS = ["numpy", "tensor", "tensor-torch-path"]  # input kind / code path
_LIMITS = {dtype: (int(torch.iinfo(dtype).min), int(torch.iinfo(dtype).max)) for dtype in DTYPES}


@contextmanager
def code_path(kind: str) -> Iterator[None]:
    saved = functional_stq.USE_NUMPY_ON_CPU
    functional_stq.USE_NUMPY_ON_CPU = kind != "tensor-torch-path"
    try:
        yield
    finally:
        functional_stq.USE_NUMPY_ON_CPU = saved


def encode(pairs: np.ndarray, layout: str, dtype: torch.dtype, kind: str, divisor: int) -> Any:
    """(B, H, W, 2) int64 labels in a layout, dtype and kind; None where the dtype cannot hold them."""
    low, high = _LIMITS[dtype]
    packed = pairs[..., 0] * divisor + pairs[..., 1]
    values = packed if layout == "packed" else pairs
    if values.size and (values.min() < low or values.max() > high):
        return None

    def convert(array: np.ndarray) -> Any:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(dtype)
        return tensor.numpy() if kind == "numpy" else tensor

    if layout == "pairs":
        return convert(pairs)
    if layout == "split":
        return convert(pairs[..., 0]), convert(pairs[..., 1])
    return convert(packed)


def divisor_for(dtype: torch.dtype, layout: str) -> int:
    """A label divisor whose packed ids fit the dtype where possible (instances stay below 256)."""
    return 256 if layout == "packed" and _LIMITS[dtype][1] < 2**24 else 65536


def frame(semantic: list[list[int]], instance: list[list[int]]) -> np.ndarray:
    return np.stack([np.asarray(semantic), np.asarray(instance)], axis=-1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_published_cases_on_every_dtype_layout_and_path(dtype: torch.dtype, layout: str, kind: str) -> None:
    divisor = divisor_for(dtype, layout)
    ran = 0
    with code_path(kind):
        for case in CASES:
            metric = STQ(case["num_classes"], case["things"], case["ignore_label"], label_divisor=divisor)
            inputs = []
            for sequence in case["sequences"]:
                for f in sequence["frames"]:
                    target = frame(f["gt_semantic"], f["gt_instance"])[None]
                    preds = frame(f["pred_semantic"], f["pred_instance"])[None]
                    inputs.append(
                        (
                            encode(preds, layout, dtype, kind, divisor),
                            encode(target, layout, dtype, kind, divisor),
                        )
                    )
            if any(p is None or t is None for p, t in inputs):
                continue  # e.g. the ignore label 255 packed into an int16
            for preds, target in inputs:
                metric.update(preds, target, [case["sequences"][0]["sequence_id"]])
            result, expected = metric.compute(), case["expected"]
            assert result["stq"] == pytest.approx(expected["stq"], abs=1e-6), case["name"]
            assert result["aq"] == pytest.approx(expected["aq"], abs=1e-6), case["name"]
            assert result["sq"] == pytest.approx(expected["iou"], abs=1e-6), case["name"]
            ran += 1
    # packed into 8 or 16 bits, only the cases without the ignore label 255 fit
    assert ran == len(CASES) if layout != "packed" or dtype not in (torch.uint8, torch.int16) else ran > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_classes=st.integers(1, 4),
    ignore_choice=st.sampled_from(["255", "num_classes", "inside"]),
    piecewise=st.booleans(),
    batch_size=st.integers(1, 4),
    layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
    kind=st.sampled_from(KINDS),
    chunk=st.sampled_from([3, 1 << 17]),
    divisor=st.sampled_from([4, 1000, 65536]),  # instances are below 4; 4 packs into 8 or 16 bits
)
def test_random_sequences_match_the_slow_reference(
    stq_close,
    reference_stq,
    seed: int,
    num_classes: int,
    ignore_choice: str,
    piecewise: bool,
    batch_size: int,
    dtype: torch.dtype,
    layouts: tuple[str, str],
    kind: str,
    chunk: int,
    divisor: int,
) -> None:
    """Every dtype; preds and target each in any layout; any code path; tiny and normal pixel chunks."""
    rng = np.random.default_rng(seed)
    ignore_label = {"255": 255, "num_classes": num_classes, "inside": num_classes - 1}[ignore_choice]
    things = [c for c in range(num_classes) if c != ignore_label and rng.random() < 0.6]
    frames, rng = random_stq_frames(seed, num_classes, ignore_label, piecewise)
    pred_layout, target_layout = layouts
    metric = STQ(num_classes, things, ignore_label, divisor, coalesce_every=int(rng.integers(1, 4)))
    saved = functional_stq.CPU_CHUNK_PIXELS
    functional_stq.CPU_CHUNK_PIXELS = chunk
    try:
        with code_path(kind):
            for start in range(0, len(frames), batch_size):
                chunk_frames = frames[start : start + batch_size]
                preds = encode(np.stack([f[2] for f in chunk_frames]), pred_layout, dtype, kind, divisor)
                target = encode(np.stack([f[1] for f in chunk_frames]), target_layout, dtype, kind, divisor)
                if preds is None or target is None:
                    return  # the dtype cannot hold these labels in this layout
                metric.update(preds, target, [f[0] for f in chunk_frames])
            result = metric.compute()
    finally:
        functional_stq.CPU_CHUNK_PIXELS = saved
    stq_close(result, reference_stq(frames, num_classes, things, ignore_label))


@pytest.mark.parametrize("kind", KINDS)
def test_64_bit_labels_beyond_32_bits(kind: str, reference_stq, stq_close) -> None:
    """int64 ids that differ only above bit 32, or only by swapped channels, stay different tubes."""
    big = 2**40
    target = np.array(
        [[[[1, 5], [1, 5 + 2**32], [1, 5 + 2**32], [0, 0]], [[1, 3], [3, 1], [1, 3], [1, big - 1]]]],
        dtype=np.int64,
    )
    preds = np.array(
        [[[[1, 7], [1, 7], [1, 7 + 2**33], [0, 0]], [[3, 1], [1, 3], [1, 3], [1, big - 1]]]], dtype=np.int64
    )
    space = STQLabelSpace(4, (1, 3), 255, label_divisor=big)
    with code_path(kind):
        metric = STQ(4, [1, 3], 255, label_divisor=big)
        for layout in LAYOUTS:
            if layout == "packed":
                continue  # 3 * 2**40 + id fits, but the split/pairs checks cover these values
            inputs = [encode(a, layout, torch.int64, kind, big) for a in (preds, target)]
            metric.update(inputs[0], inputs[1], [layout])
        result = metric.compute()
        confusion, pairs, _ = stq_batch_statistics(
            encode(preds, "pairs", torch.int64, kind, big),
            encode(target, "pairs", torch.int64, kind, big),
            [0],
            1,
            space,
        )
    expected = reference_stq([(layout, target[0], preds[0]) for layout in ("pairs", "split")], 4, [1, 3], 255)
    stq_close(result, expected, 1e-12)
    rows = functional_stq.sum_pair_rows(np.asarray(pairs))
    gt_ids = set(rows[rows[:, 1] >= 0, 1].tolist())
    assert {1 * big + 5, 1 * big + 5 + 2**32, 1 * big + 3, 3 * big + 1, 1 * big + big - 1} == gt_ids
    assert int(np.asarray(confusion).sum()) == 8


@pytest.mark.parametrize("kind", KINDS)
def test_packed_ids_with_a_divisor_that_is_no_power_of_two(kind: str) -> None:
    pairs = np.array([[[[1, 999], [1, 999], [0, 0], [255, 0]]]])
    with code_path(kind):
        packed = STQ(2, [1], 255, label_divisor=1000)
        packed.update(
            encode(pairs, "packed", torch.int32, kind, 1000),
            encode(pairs, "packed", torch.int32, kind, 1000),
            0,
        )
        assert packed.compute()["stq"] == 1.0
        wrong = encode(np.array([[[[1, 5]]]]), "packed", torch.int32, kind, 1000) - 1006  # -1: class -1
        with pytest.raises(STQInputError, match=r"semantic ids .* found \[-1\]"):
            STQ(2, [1], 255, label_divisor=1000).update(wrong, wrong, 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("target", "preds", "which", "message"),
    [
        (
            [[5, 0]],
            [[0, 0]],
            "target",
            r"semantic ids must lie in \[0, 2\) or be the ignore label 255; found \[5\]",
        ),
        ([[0, 0]], [[7, 0]], "preds", r"found \[7\]"),
        ([[0, 0]], [[-1, 0]], "preds", r"found \[-1\]"),
        (
            [[1, 70000]],
            [[0, 0]],
            "target",
            r"instance ids of thing pixels must lie in \[1, 65536\); found \[70000\]",
        ),
        ([[1, -3]], [[0, 0]], "target", r"found \[-3\]"),
        (
            [[0, 0]],
            [[1, 70000]],
            "preds",
            r"instance ids of thing pixels must lie in \[0, 65536\); found \[70000\]",
        ),
        ([[1, 0]], [[1, 70000]], "preds", None),  # on ground-truth crowd: not a segment, not checked
        ([[9, 0]], [[7, 0]], "target", r"found \[9\]"),  # the target is checked first
    ],
)
def test_invalid_values_raise_one_clear_error(
    kind: str, target: list[list[int]], preds: list[list[int]], which: str, message: str | None
) -> None:
    target_pairs = np.array([[[pixel for pixel in target]]], dtype=np.int64)
    pred_pairs = np.array([[[pixel for pixel in preds]]], dtype=np.int64)
    with code_path(kind):
        metric = STQ(2, [1], 255)
        update = lambda: metric.update(  # noqa: E731
            encode(pred_pairs, "pairs", torch.int64, kind, 65536),
            encode(target_pairs, "pairs", torch.int64, kind, 65536),
            ["s"],
        )
        if message is None:
            update()
            return
        with pytest.raises(STQInputError, match=message) as info:
            update()
    assert info.value.which == which


def test_bad_layouts_and_dtypes_raise_one_line() -> None:
    metric = STQ(2, [1], 255)
    good = torch.zeros((1, 2, 3, 2), dtype=torch.int64)
    cases = [
        (torch.zeros((1, 2, 3, 3), dtype=torch.int64), good, "preds: expected"),  # 4-D but not 2 channels
        (torch.zeros((2, 3), dtype=torch.int64), good, r"got shape \(2, 3\)"),
        ((good[..., 0],), good, "sequence of 1 items"),
        ((good[..., 0], good[:, :1, :, 1]), good, "must both be"),
        ((good[..., 0], good[..., 1].numpy()), good, "both be tensors"),
        (good.float(), good, "integer labels, got torch.float32"),
        (good.bool(), good, "integer labels, got torch.bool"),
        ([[1, 2], [3, 4]], good, "a NumPy array or a torch tensor"),
        (good[:, :1], good, "must have one shape"),
        (good.numpy(), good, "both be torch tensors or both NumPy arrays"),
        (good, np.zeros((1, 2, 3), dtype=np.float64), "target must hold integer labels"),
    ]
    for preds, target, fragment in cases:
        with pytest.raises(ValueError, match=fragment) as info:
            metric.update(preds, target, ["s"])
        assert "\n" not in str(info.value)


def test_layouts_may_differ_between_preds_and_target(reference_stq, stq_close) -> None:
    rng = np.random.default_rng(5)
    target = np.stack([rng.choice([0, 1, 255], (2, 6, 9)), rng.integers(0, 3, (2, 6, 9))], -1)
    preds = np.stack([rng.choice([0, 1, 255], (2, 6, 9)), rng.integers(0, 3, (2, 6, 9))], -1)
    metric = STQ(2, [1], 255)
    metric.update(
        (torch.from_numpy(preds[..., 0]).to(torch.uint8), torch.from_numpy(preds[..., 1]).to(torch.int32)),
        torch.from_numpy(target[..., 0] * 65536 + target[..., 1]).to(torch.uint32),
        ["a", "b"],
    )
    expected = reference_stq([("a", target[0], preds[0]), ("b", target[1], preds[1])], 2, [1], 255)
    stq_close(metric.compute(), expected, 1e-12)


def test_non_contiguous_inputs(reference_stq, stq_close) -> None:
    rng = np.random.default_rng(8)
    wide = np.stack([rng.choice([0, 1], (1, 4, 10)), rng.integers(0, 3, (1, 4, 10))], -1)
    for kind in KINDS:
        with code_path(kind):
            labels = encode(wide, "pairs", torch.int32, kind, 65536)[:, :, ::2]  # strided view
            metric = STQ(2, [1], 255)
            metric.update(labels, labels, 0)
            assert metric.compute()["stq"] == 1.0


class SyncCounter(TorchFunctionMode):
    """Counts the torch calls that wait for an accelerator (read values back, or size output by data)."""

    SYNCING: ClassVar[set[str]] = {
        "tolist",
        "item",
        "cpu",
        "numpy",
        "nonzero",
        "unique",
        "__bool__",
        "__int__",
        "__float__",
        "masked_select",
    }

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in self.SYNCING or (name == "to" and any(str(a) == "cpu" for a in args[1:])):
            self.calls.append(name)
        if name == "__getitem__" and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool
            for index in (args[1] if isinstance(args[1], tuple) else (args[1],))
        ):
            self.calls.append("boolean index")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.int32, torch.int64], ids=str)
def test_torch_path_synchronises_once_per_update(dtype: torch.dtype, layout: str) -> None:
    rng = np.random.default_rng(2)
    pairs = np.stack([rng.choice([0, 1, 2], (2, 8, 8)), rng.integers(0, 3, (2, 8, 8))], -1)
    divisor = 4 if layout == "packed" else 65536  # packed ids up to 10 fit in 8 bits
    preds = encode(pairs, layout, dtype, "tensor", divisor)
    target = encode(pairs[::-1].copy(), layout, dtype, "tensor", divisor)
    metric = STQ(3, [1, 2], 255, label_divisor=divisor)
    with code_path("tensor-torch-path"):
        metric.update(preds, target, ["a", "b"])  # the label space's tables reach the device once
        counter = SyncCounter()
        with counter:
            metric.update(preds, target, ["a", "b"])
    assert counter.calls == ["tolist"]
    assert all(t.dtype == torch.int64 for t in metric.pair_records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_update_synchronises_once_and_matches_the_cpu() -> None:  # pragma: no cover - GPU only
    rng = np.random.default_rng(4)
    pairs = torch.from_numpy(
        np.stack([rng.choice([0, 1, 2, 255], (2, 64, 96)), rng.integers(0, 5, (2, 64, 96))], -1)
    )
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        for layout in LAYOUTS:
            divisor = divisor_for(dtype, layout)
            preds = encode(pairs.numpy(), layout, dtype, "tensor", divisor)
            target = encode(pairs.flip(0).numpy(), layout, dtype, "tensor", divisor)
            if preds is None or target is None:
                continue
            move = (lambda x: tuple(t.cuda() for t in x)) if layout == "split" else (lambda x: x.cuda())
            gpu_preds, gpu_target = move(preds), move(target)
            cpu = STQ(3, [1, 2], 255, label_divisor=divisor)
            gpu = STQ(3, [1, 2], 255, label_divisor=divisor).cuda()
            cpu.update(preds, target, ["a", "b"])
            gpu.update(gpu_preds, gpu_target, ["a", "b"])  # warm-up: tables reach the device
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with pytest.warns(UserWarning) as caught:
                    gpu.update(gpu_preds, gpu_target, ["a", "b"])
            finally:
                torch.cuda.set_sync_debug_mode("default")
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            assert len(syncs) == 1, [str(w.message) for w in syncs]
            assert all(t.is_cuda for t in gpu.pair_records + gpu.confusion_records)
            cpu.update(preds, target, ["a", "b"])
            assert json.dumps(gpu.compute(), sort_keys=True) == json.dumps(cpu.compute(), sort_keys=True)


def test_accumulator_equals_the_metric_and_needs_no_torch(reference_stq, stq_close) -> None:
    frames, _ = random_stq_frames(21, 3, 255, piecewise=True)
    accumulator, metric = STQAccumulator(STQLabelSpace(3, (1, 2))), STQ(3, [1, 2])
    for name, target, preds in frames:
        accumulator.update(preds[None], target[None], name)
        metric.update(torch.from_numpy(preds[None]), torch.from_numpy(target[None]), name)
    stq_close(accumulator.compute(), metric.compute(), 0.0)
    stq_close(accumulator.compute(), reference_stq(frames, 3, [1, 2], 255))
    code = (
        "import sys, numpy as np\n"
        "from hvps_lightning.metrics import STQAccumulator, STQLabelSpace\n"
        "stq = STQAccumulator(STQLabelSpace(2, (1,)))\n"
        "f = np.array([[[1 * 65536 + 4, 0]]], dtype=np.uint32)\n"
        "stq.update(f, f, 'a')\n"
        "assert stq.compute()['stq'] == 1.0\n"
        "assert 'torch' not in sys.modules and 'torchmetrics' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_accumulator_memory_is_bounded_and_nan_is_kept() -> None:
    accumulator = STQAccumulator(STQLabelSpace(2, (1,)))
    accumulator.coalesce_every = 4
    target = np.array([[[[1, 4], [1, 4], [0, 0]]]])
    for _ in range(50):
        accumulator.update(target, target, "long")
    accumulator.update(np.array([[[[255, 0]]]]), np.array([[[[255, 0]]]]), "void")
    assert len(accumulator._pairs) < 4
    result = accumulator.compute()
    assert result["num_frames"] == 51 and result["aq"] == 1.0
    assert math.isnan(result["per_sequence"]["void"]["sq"])
