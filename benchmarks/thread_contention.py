"""Two torch jobs on one machine: how much a training step slows down, and what the thread settings change.

Each measurement runs the demo's first MOTS stage network (``configs/demo/mots`` sizes, a clip
of 3 frames at 192x320, one item) for ``--steps`` training steps in a subprocess, alone and
with a second identical job beside it, under three settings:

* ``default``: torch's own (one intra-op thread per core, OpenMP threads spin while waiting);
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep instead of spinning);
* ``split``: ``OMP_NUM_THREADS`` = cores / 2 for each job.

Prints one JSON line: the median step time of each setting alone and side by side, and the
slowdown of a job next to another (side-by-side time / alone time; 2.0 is a fair share).

What ``hvps`` does with it: it leaves one process's threads to torch (alone, ``default`` is the
fastest; ``passive`` costs about a fifth), sizes every process it starts itself to its share of
the cores (sweep workers: ``cores // --n-jobs`` threads; DataLoader workers: one, torch's own
rule; the tests: one per pytest-xdist worker), and the README tells users who share a machine
to set ``OMP_NUM_THREADS`` (the ``split`` row).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(steps: int) -> None:
    import torch

    from hvps_lightning.models.mots.net import MOTSNet

    torch.manual_seed(0)
    net = MOTSNet(
        thing_ids=(4,), backbone="resnet18", trainable_layers=5, fpn_channels=64,
        temporal_attention_channels=16,
        anchor_sizes=(16, 32, 64, 128, 256), aspect_ratios=(1.0, 2.0, 3.0), rpn_batch_size_per_image=128,
        box_batch_size_per_image=128, box_representation_size=256, mask_head_layers=2, mask_head_channels=64,
        spatial_attention_channels=32, embedding_dim=64, embedding_channels=64,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    frames = torch.rand(1, 3, 3, 192, 320)
    masks = torch.zeros(2, 192, 320, dtype=torch.uint8)
    masks[0, 40:140, 50:90] = 1
    masks[1, 60:170, 200:240] = 1
    targets = [{"boxes": torch.tensor([[50.0, 40.0, 90.0, 140.0], [200.0, 60.0, 240.0, 170.0]]),
                "labels": torch.tensor([4, 4]), "masks": masks, "identities": torch.tensor([1, 2]),
                "track_ids": torch.tensor([1, 2])}]  # fmt: skip
    net.train()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        losses = net(frames, targets, target_index=2)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"median_step_s": statistics.median(times[1:])}))


def run(jobs: int, env_update: dict[str, str], steps: int) -> float:
    env = {**os.environ, **env_update}
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        if key not in env_update:
            env.pop(key, None)
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--steps", str(steps)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(jobs)
    ]
    medians = [json.loads(p.communicate()[0].strip().splitlines()[-1])["median_step_s"] for p in processes]
    return statistics.median(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps)
        return
    cores = len(os.sched_getaffinity(0))
    settings = {
        "default": {},
        "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
        "split": {"OMP_NUM_THREADS": str(max(1, cores // 2))},
    }
    result: dict[str, object] = {"benchmark": "thread_contention", "cores": cores, "steps": args.steps}
    for name, env in settings.items():
        alone = run(1, env, args.steps)
        side_by_side = run(2, env, args.steps)
        result[name] = {
            "alone_step_s": round(alone, 4),
            "side_by_side_step_s": round(side_by_side, 4),
            "slowdown": round(side_by_side / alone, 2),
        }
        print(
            f"{name}: alone {alone:.3f} s/step, beside another job {side_by_side:.3f} s/step", file=sys.stderr
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
