"""Building blocks of ``hvps demo`` and ``hvps ablate``: the same ``hvps`` commands a user types.

Each step is an ``hvps`` command run in this process through :func:`hvps_lightning.cli.main`
(imports are paid once), timed, and appended to ``commands.sh`` in the output folder, so a run
can be replayed or read as the recipe it is.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import atomic_open
from hvps_lightning.wandb_io import WANDB_MODES

#: MOTChallenge-STEP's reference validation sequence; the layout keeps it in the train/ folders
VAL_SEQUENCE = "0002"
GT_FOLDER = "train"

#: finetuning stage -> the synthetic preset / dataset it trains on
STAGE_PRESETS: dict[str, str] = {
    "kitti_panoptic": "kitti_panoptic",
    "kitti_step": "kitti_step",
    "mot_step": "motchallenge_step",
}

def fresh_output_dir(requested: str | Path) -> Path:
    """Return ``requested`` if it is absent or empty, else the first free ``<requested>-<k>``.

    An earlier run is never overwritten: its folder is left as it is and the caller is told
    where the new run goes.
    """
    base = Path(requested)
    candidate, k = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


@dataclass
class StepRecord:
    """One command of a pipeline and how long it took."""

    name: str
    argv: list[str]
    seconds: float


@dataclass
class CommandRunner:
    """Run ``hvps`` commands in-process, time them and log them to ``<out>/commands.sh``."""

    out: Path
    console: Any = None
    steps: list[StepRecord] = field(default_factory=list)
    total: int = 0

    def __post_init__(self) -> None:
        self.script = self.out / "commands.sh"
        self._lines = [
            "#!/usr/bin/env bash",
            "# The hvps commands this run executed, in order.",
            "set -euo pipefail",
        ]

    def run(self, name: str, argv: Sequence[str]) -> float:
        """Run ``hvps <argv>``; raise :class:`HVPSError` if it fails; return its wall time in seconds."""
        from hvps_lightning.cli import main
        from hvps_lightning.lightning.cli import finish_wandb_run

        argv = [str(a) for a in argv]
        self._lines.append(f"hvps {shlex.join(argv)}")
        with atomic_open(self.script, "w", encoding="utf-8") as handle:
            handle.write("\n".join(self._lines) + "\n")
        index = len(self.steps) + 1
        header = f"[{index}/{self.total or '?'}] {name}"
        if self.console is not None:
            self.console.rule(header)
            self.console.print(f"[dim]$ hvps {shlex.join(argv)}[/dim]")
        start = time.perf_counter()
        try:
            code = main(argv)
        except SystemExit as exc:  # argument errors of jsonargparse / LightningCLI
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        finally:
            finish_wandb_run()
        seconds = time.perf_counter() - start
        if code != 0:
            raise HVPSError(f"step {header!r} failed (exit {code}): hvps {shlex.join(argv)}")
        self.steps.append(StepRecord(name, argv, seconds))
        return seconds

    def timings(self) -> dict[str, float]:
        """Seconds per step name, plus the total."""
        timings = {s.name: round(s.seconds, 2) for s in self.steps}
        timings["total"] = round(sum(s.seconds for s in self.steps), 2)
        return timings


def synth_sequences(root: str | Path, split: str) -> list[str]:
    """Names of the generated sequences of ``split`` (from the generator's ``hvps_synth.json``).

    Generated roots can hold more sequences than a dataset's official split lists (e.g. extra
    MOTChallenge-STEP training sequences beside 0009); a DataModule's ``sequences`` option
    takes this list to train on all of them.

    Raises:
        HVPSError: if ``root`` was not written by ``hvps synth``.
    """
    manifest = Path(root) / "hvps_synth.json"
    if not manifest.is_file():
        raise HVPSError(f"{manifest}: not found (not a generated dataset root)")
    entries = read_json(manifest)["summary"]["sequences"]
    return [entry["name"] for entry in entries if entry["split"] == split]


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file written by an earlier step."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def render_overlays(
    image_dir: Path, step_dir: Path, dataset: str, gif_path: Path, fps: float = 6.0, max_frames: int = 120
) -> Path:
    """Write a GIF of the fused STEP predictions of one sequence over its images."""
    from hvps_lightning.data.loaders import read_image
    from hvps_lightning.formats.step_png import read_step_png
    from hvps_lightning.viz.overlay import overlay_panoptic
    from hvps_lightning.viz.video import write_gif

    frames: list[np.ndarray] = []
    for png in sorted(step_dir.glob("*.png"))[:max_frames]:
        candidates = [image_dir / png.name, image_dir / f"{png.stem}.jpg"]
        image_path = next((c for c in candidates if c.is_file()), None)
        image = read_image(image_path) if image_path is not None else None
        semantic, instance = read_step_png(png)
        frames.append(overlay_panoptic(image, semantic, instance, dataset))
    if not frames:
        raise HVPSError(f"{step_dir}: no STEP PNGs to render")
    return write_gif(gif_path, frames, fps=fps)


def check_wandb_mode(mode: str) -> None:
    """Raise :class:`HVPSError` naming ``--wandb`` unless ``mode`` is one of :data:`WANDB_MODES`."""
    if mode not in WANDB_MODES:
        raise HVPSError(f"--wandb {mode}: expected one of {', '.join(WANDB_MODES)}")


def evaluate_val_sequence(
    runner: CommandRunner,
    root: Path,
    pred: Path,
    step_json: Path,
    mots_json: Path,
    suffix: str = "",
    quiet: bool = False,
) -> None:
    """``hvps evaluate step`` and ``mots`` of the :data:`VAL_SEQUENCE` predictions in ``pred``.

    ``root`` is the generated MOTChallenge-STEP root; ``pred`` holds ``step/`` and ``mots/``;
    the steps are named ``evaluate step<suffix>`` and ``evaluate mots<suffix>``.
    """
    runner.run(
        f"evaluate step{suffix}",
        ["evaluate", "step", "--gt", root / "panoptic_maps" / GT_FOLDER, "--pred", pred / "step",
         "--dataset", "motchallenge_step", "--sequences", VAL_SEQUENCE, "--output", step_json,
         *(["--quiet"] if quiet else [])],
    )  # fmt: skip
    runner.run(
        f"evaluate mots{suffix}",
        ["evaluate", "mots", "--gt", root / "instances_txt" / GT_FOLDER, "--pred", pred / "mots",
         "--sequences", VAL_SEQUENCE, "--output", mots_json, *(["--quiet"] if quiet else [])],
    )  # fmt: skip
