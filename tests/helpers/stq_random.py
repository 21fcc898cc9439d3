"""Random STQ inputs shared by the STQ tests (one generator, so every path sees the same cases)."""

from __future__ import annotations

import numpy as np


def random_stq_frames(seed: int, num_classes: int, ignore_label: int, piecewise: bool):
    """Frames (sequence, prediction (H, W, 2), ground truth (H, W, 2)) of 1-3 sequences.

    Labels are drawn per pixel, or as blocks (long runs) with ``piecewise``.
    """
    rng = np.random.default_rng(seed)
    semantic_values = (
        [*range(num_classes), ignore_label] if ignore_label >= num_classes else list(range(num_classes))
    )
    height, width = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    frames = []
    for sequence in range(int(rng.integers(1, 4))):
        name = [sequence, f"seq-{sequence}", str(sequence)][sequence % 3]
        for _ in range(int(rng.integers(1, 4))):
            pair = []
            for _ in range(2):
                if piecewise:
                    sem = np.repeat(rng.choice(semantic_values, (height, 1)), width, axis=1)
                    inst = np.repeat(rng.integers(0, 3, (height, 1)), width, axis=1)
                    sem[rng.random((height, width)) < 0.1] = rng.choice(semantic_values)
                else:
                    sem = rng.choice(semantic_values, (height, width))
                    inst = rng.integers(0, 4, (height, width))
                pair.append(np.stack([sem, inst], -1))
            frames.append((name, pair[0], pair[1]))
    return [frames[i] for i in rng.permutation(len(frames))], rng
