"""STQ under DDP: two CPU processes (gloo) give the single-process numbers.

Scenarios (each rank gets part of the frames, compute() all-gathers the states):
* ``split``: the frames of every sequence alternate between the ranks;
* ``disjoint``: each rank sees whole sequences of its own;
* ``idle``: rank 1 sees no frame at all (its states are empty lists before the gather).
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hvps_lightning.metrics import STQ

WORLD_SIZE = 2
NUM_CLASSES, THINGS, IGNORE = 4, [2, 3], 255


def make_frames(seed: int = 5) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = []
    for name in ["0002", "0009", 7]:
        gt_ids = rng.integers(1, 4, (6, 8))
        for _ in range(4):
            semantic = np.repeat(rng.choice([0, 1, 2, 3, 255], (6, 1)), 8, axis=1)
            target = np.stack([semantic, np.where(np.isin(semantic, THINGS), gt_ids, 0)], -1)
            noise = rng.random((6, 8)) < 0.2
            pred_semantic = np.where(noise, rng.choice([0, 1, 2, 3, 255], (6, 8)), semantic)
            pred_instance = np.where(noise, rng.integers(0, 5, (6, 8)), target[..., 1])
            frames.append((name, target, np.stack([pred_semantic, pred_instance], -1)))
    return frames


def shard(scenario: str, rank: int, frames: list) -> list:
    if scenario == "split":
        return frames[rank::WORLD_SIZE]
    if scenario == "disjoint":
        names = sorted({str(f[0]) for f in frames})
        mine = set(names[rank::WORLD_SIZE])
        return [f for f in frames if str(f[0]) in mine]
    return frames if rank == 0 else []  # idle


def evaluate(frames: list) -> dict[str, Any]:
    metric = STQ(NUM_CLASSES, THINGS, IGNORE, coalesce_every=3)
    for name, target, preds in frames:
        metric.update(torch.from_numpy(preds)[None], torch.from_numpy(target)[None], [name])
    return metric.compute()


def worker(rank: int, store_file: str, results: Any) -> None:
    torch.set_num_threads(1)
    try:
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{store_file}", rank=rank, world_size=WORLD_SIZE
        )
        frames = make_frames()
        out = {
            scenario: evaluate(shard(scenario, rank, frames)) for scenario in ("split", "disjoint", "idle")
        }
        torch.distributed.destroy_process_group()
        results.put((rank, out))
    except BaseException as exc:  # report instead of hanging the parent
        results.put((rank, repr(exc)))
        raise


def same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or abs(actual - expected) <= 1e-12


@pytest.mark.skipif(sys.platform != "linux", reason="uses fork to start the ranks quickly")
def test_two_gloo_ranks_give_the_single_process_numbers(tmp_path: Path) -> None:
    expected = evaluate(make_frames())
    assert expected["num_frames"] == 12 and len(expected["per_sequence"]) == 3
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    ranks = [
        context.Process(target=worker, args=(rank, str(tmp_path / "store"), results))
        for rank in range(WORLD_SIZE)
    ]
    for process in ranks:
        process.start()
    outputs = {}
    try:
        for _ in range(WORLD_SIZE):
            rank, out = results.get(timeout=60)
            if not isinstance(out, dict):  # a failed rank leaves the other one waiting
                pytest.fail(f"rank {rank} failed: {out}")
            outputs[rank] = out
    except queue.Empty:  # pragma: no cover - only on a hang
        pytest.fail("a DDP rank did not report within 60 s")
    finally:
        for process in ranks:
            process.join(timeout=10)
            if process.is_alive():  # pragma: no cover
                process.kill()
    for rank in range(WORLD_SIZE):
        for scenario, result in outputs[rank].items():
            assert result["num_frames"] == expected["num_frames"], (rank, scenario)
            for key in ("stq", "aq", "sq"):
                assert same(result[key], expected[key]), (rank, scenario, key, result[key], expected[key])
            assert list(result["per_sequence"]) == list(expected["per_sequence"]), (rank, scenario)
            for sequence, values in expected["per_sequence"].items():
                for key, value in values.items():
                    assert same(result["per_sequence"][sequence][key], value), (rank, scenario, sequence, key)
            for name, value in expected["iou_per_class"].items():
                assert same(result["iou_per_class"][name], value), (rank, scenario, name)
