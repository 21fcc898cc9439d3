"""``hvps ablate``: the TA/SA grid and the tracker's retrieval/re-ID switches, side by side.

Every variant of the MOTS network (temporal attention on/off x spatial attention on/off) is
trained on the same generated MOTChallenge-STEP data with the same budget and seeds (the
shipped configs ``stages/mot_step/mots`` + ``demo/mots`` + ``ablations/ta_sa/<variant>``),
predicts the validation sequence, and is tracked and scored by the same tracker. The semantic
part of the panoptic output is the ground truth, so AQ, sMOTSA and IDF1 measure the MOTS network
and the tracker alone. The tracker
switches (short-term retrieval, long-term re-ID) are then ablated on the full model's
detections. Writes ``ablation.csv``, ``ablation.md``, ``ablation.png`` and one W&B group.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.pipeline import (
    GT_FOLDER,
    VAL_SEQUENCE,
    CommandRunner,
    check_wandb_mode,
    fresh_output_dir,
    synth_sequences,
)
from hvps_lightning.errors import HVPSError
from hvps_lightning.io import atomic_open, atomic_path, last_checkpoint

TA_SA_VARIANTS: tuple[tuple[bool, bool], ...] = ((True, True), (True, False), (False, True), (False, False))
TRACKER_VARIANTS: dict[str, dict[str, bool]] = {
    "full tracker": {},
    "no short-term retrieval": {"short_term_enabled": False},
    "no long-term re-ID": {"long_term_enabled": False},
    "neither": {"short_term_enabled": False, "long_term_enabled": False},
}
METRICS = ("aq", "stq", "sMOTSA", "MOTSA", "IDF1", "HOTA", "IDSW")


def variant_name(ta: bool, sa: bool) -> str:
    """File-name form of a TA/SA variant, e.g. ``ta_on_sa_off``."""
    return f"ta_{'on' if ta else 'off'}_sa_{'on' if sa else 'off'}"


def build_parser() -> ArgumentParser:
    """The ``hvps ablate`` argument parser."""
    parser = ArgumentParser(
        prog="hvps ablate",
        description="Train the four TA/SA variants of the MOTS network on the same data, budget and seeds, "
        "track them with the same tracker, ablate the tracker's retrieval/re-ID switches, and write "
        "ablation.csv, ablation.md and ablation.png.",
    )
    parser.add_argument(
        "--out", type=str, default="outputs/ablation", help="output folder (never overwritten)"
    )
    parser.add_argument(
        "--data-root", type=str, default="data/ablation", help="where the generated data goes"
    )
    parser.add_argument("--steps", type=int | None, default=None, help="steps per variant (300; --fast 10)")
    parser.add_argument("--frames", type=int | None, default=None, help="frames per sequence (60; --fast 12)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="training seeds (data uses the first)"
    )
    parser.add_argument(
        "--sequences", type=int, default=5, help="generated sequences: 0002 (val), the rest for training"
    )
    parser.add_argument(
        "--init-from", type=str | None, default=None, help="start every variant from this ckpt"
    )
    parser.add_argument("--fast", action="store_true", help="smoke run: 10 steps, 12 frames by default")
    parser.add_argument("--wandb", type=str, default="auto", help="W&B mode: auto, offline, online, disabled")
    return parser


def run(cfg: Namespace) -> int:
    """Run the grid; write the table, the plot and the CSV; return 0."""
    from rich.console import Console

    console = Console()
    steps = cfg.steps if cfg.steps is not None else (10 if cfg.fast else 300)
    frames = cfg.frames if cfg.frames is not None else (12 if cfg.fast else 60)
    if steps < 1 or frames < 3:
        raise HVPSError(f"--steps must be >= 1 and --frames >= 3, got {steps} and {frames}")
    check_wandb_mode(cfg.wandb)
    out = fresh_output_dir(cfg.out)
    if out != Path(cfg.out):
        console.print(f"[yellow]{cfg.out} holds an earlier run (kept); this run writes to {out}[/yellow]")
    runner = CommandRunner(out, console=console)
    runner.total = 1 + len(cfg.seeds) * len(TA_SA_VARIANTS) * 2
    group = f"ablation-{out.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(cfg.data_root) / "motchallenge_step"
    runner.run("synth", ["synth", "--preset", "motchallenge_step", "--out", root, "--seed", cfg.seeds[0],
                         "--frames", frames, "--sequences", cfg.sequences])  # fmt: skip
    train_sequences = synth_sequences(root, "train")
    rows: list[dict[str, Any]] = []
    full_caches: list[Path] = []
    for seed in cfg.seeds:
        for ta, sa in TA_SA_VARIANTS:
            name = variant_name(ta, sa)
            work = out / "runs" / f"{name}-seed{seed}"
            argv = ["fit", "--config", "stages/mot_step/mots",
                    "--config", "demo/mots",
                    "--config", f"ablations/ta_sa/{name}",
                    "--data.init_args.root", root, "--seed_everything", seed, "--trainer.max_steps", steps,
                    "--trainer.default_root_dir", work, "--trainer.logger.init_args.save_dir", out / "wandb",
                    "--trainer.logger.init_args.mode", cfg.wandb, "--trainer.logger.init_args.group", group,
                    "--trainer.logger.init_args.name", f"{name}-seed{seed}",
                    # the demo config's OneCycleLR spans exactly the training steps
                    "--model.init_args.lr_scheduler.init_args.total_steps", steps,
                    "--data.init_args.sequences", json.dumps({"train": train_sequences})]  # fmt: skip
            if cfg.init_from:
                argv += ["--model.init_args.init_from", cfg.init_from]
            seconds = runner.run(f"fit {name} seed {seed}", argv)
            ckpt = last_checkpoint(work)
            cache = work / "detections"
            runner.run(
                f"predict {name} seed {seed}",
                ["predict", "--config", "stages/mot_step/mots",
                 "--config", "demo/mots",
                 "--config", f"ablations/ta_sa/{name}",
                 "--config", "predict/mots", "--data.init_args.root", root,
                 "--trainer.default_root_dir", work, "--trainer.callbacks.init_args.output_dir", cache,
                 "--ckpt_path", ckpt],
            )  # fmt: skip
            if ta and sa:
                full_caches.append(cache)
            metrics = evaluate_cache(cache, root, None)
            rows.append({"group": "TA/SA", "variant": name, "temporal_attention": ta, "spatial_attention": sa,
                         "tracker": "full tracker", "seed": seed, "train_seconds": round(seconds, 1),
                         **metrics})  # fmt: skip
    default_tracker = "tracker/default"
    for label, switches in list(TRACKER_VARIANTS.items())[1:]:
        tracker_yaml = write_tracker_variant(
            default_tracker, switches, out / "trackers" / f"{_slug(label)}.yaml"
        )
        for seed, cache in zip(cfg.seeds, full_caches, strict=True):
            console.print(f"[dim]tracker variant {label!r}, seed {seed}: {tracker_yaml}[/dim]")
            metrics = evaluate_cache(cache, root, tracker_yaml)
            rows.append({"group": "tracker", "variant": variant_name(True, True), "temporal_attention": True,
                         "spatial_attention": True, "tracker": label, "seed": seed, "train_seconds": "",
                         **metrics})  # fmt: skip
    write_outputs(out, rows, steps=steps, frames=frames, seeds=cfg.seeds)
    log_to_wandb(out, rows, group, cfg.wandb)
    console.print((out / "ablation.md").read_text())
    console.print(f"outputs in {out}: ablation.csv, ablation.md, ablation.png, wandb/ (group {group})")
    return 0


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("/", "_").replace("-", "")


def write_tracker_variant(default: str | Path, switches: dict[str, bool], path: Path) -> Path:
    """The default tracker config with some switches turned off, as a YAML file."""
    from hvps_lightning.tracking.config import TrackerConfig

    config = dataclasses.replace(TrackerConfig.from_yaml(default), **switches)
    config.to_yaml(path)
    return path


def evaluate_cache(cache: Path, root: Path, tracker: Path | None) -> dict[str, Any]:
    """Track the validation sequence of a detection cache and score it (AQ, STQ*, MOTS), in process.

    The semantic half of the fused output is the ground truth, so the numbers measure the MOTS
    network and the tracker alone (STQ* moves with AQ and the person masks only).
    """
    from hvps_lightning.evaluation.ground_truth import StepFolderGroundTruth
    from hvps_lightning.evaluation.scoring import track_fuse_score
    from hvps_lightning.evaluation.semantic import GroundTruthSemantic
    from hvps_lightning.formats.detection_cache import read_detection_cache
    from hvps_lightning.structures.specs import get_spec
    from hvps_lightning.tracking.config import TrackerConfig

    spec = get_spec("motchallenge_step")
    frames, _ = read_detection_cache(cache, VAL_SEQUENCE)
    ground_truth = StepFolderGroundTruth(root / "panoptic_maps" / GT_FOLDER, spec)
    config = TrackerConfig.from_yaml(tracker) if tracker is not None else TrackerConfig()
    scores = track_fuse_score(
        {VAL_SEQUENCE: frames}, GroundTruthSemantic(ground_truth), ground_truth, config, spec=spec
    ).scores
    mots = {
        key: scores[f"mots/pedestrian/{key}"] for key in METRICS[2:] if f"mots/pedestrian/{key}" in scores
    }
    return {"aq": scores["aq"], "stq": scores["stq"], **mots}


def _fmt(values: list[float], key: str) -> str:
    clean = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not clean:
        return "n/a"
    if key == "IDSW":
        mean = statistics.mean(clean)
        return f"{mean:.0f}" if len(clean) == 1 else f"{mean:.1f} ± {statistics.stdev(clean):.1f}"
    mean = 100 * statistics.mean(clean)
    return f"{mean:.1f}" if len(clean) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(clean):.1f}"


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, tracker) with the metrics averaged over seeds."""
    keys: list[tuple[str, str]] = []
    for row in rows:
        key = (row["variant"], row["tracker"])
        if key not in keys:
            keys.append(key)
    summary = []
    for variant, tracker in keys:
        group = [r for r in rows if (r["variant"], r["tracker"]) == (variant, tracker)]
        first = group[0]
        summary.append({"variant": variant, "TA": "on" if first["temporal_attention"] else "off",
                        "SA": "on" if first["spatial_attention"] else "off", "tracker": tracker,
                        **{k: [r.get(k, math.nan) for r in group] for k in METRICS}})  # fmt: skip
    return summary


def write_outputs(out: Path, rows: list[dict[str, Any]], steps: int, frames: int, seeds: list[int]) -> None:
    """Write ``ablation.csv`` (one row per run), ``ablation.md`` (means over seeds) and ``ablation.png``."""
    fields = ["group", "variant", "temporal_attention", "spatial_attention", "tracker", "seed",
              "train_seconds", *METRICS]  # fmt: skip
    with atomic_open(out / "ablation.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    header = "| TA | SA | tracker | AQ | STQ* | sMOTSA | MOTSA | IDF1 | HOTA | IDSW |"
    lines = [
        f"Ablation on generated MOTChallenge-STEP (val sequence {VAL_SEQUENCE}, {frames} frames), "
        f"{steps} training steps per variant, seeds {', '.join(map(str, seeds))}. Values in %, mean"
        f"{' ± std over seeds' if len(seeds) > 1 else ''}. *STQ with the ground-truth semantic map, so it "
        "moves with AQ and the person masks only.",
        "",
        header,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        cells = [row["TA"], row["SA"], row["tracker"], *(_fmt(row[k], k) for k in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    with atomic_open(out / "ablation.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    plot_summary(summary, out / "ablation.png")


def plot_summary(summary: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars of AQ, IDF1 and sMOTSA per variant (mean over seeds, error bars = std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"TA {r['TA']} / SA {r['SA']}\n{r['tracker']}" for r in summary]
    keys = ("aq", "IDF1", "sMOTSA")
    x = np.arange(len(summary))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(summary)), 4.0))
    for i, key in enumerate(keys):
        means = [100 * np.nanmean(r[key]) for r in summary]
        stds = [100 * np.nanstd(r[key]) if len(r[key]) > 1 else 0.0 for r in summary]
        ax.bar(x + (i - 1) * width, means, width, yerr=stds, label=key.upper() if key == "aq" else key)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("%")
    ax.set_title("HVPS ablation: TA/SA and tracker switches")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def log_to_wandb(out: Path, rows: list[dict[str, Any]], group: str, mode: str) -> None:
    """One finished W&B run per evaluated row, all in the ablation's group, plus the table and plot."""
    import wandb

    from hvps_lightning.lightning.wandb import resolve_wandb_mode

    resolved = resolve_wandb_mode(mode)  # type: ignore[arg-type]
    os.makedirs(out / "wandb", exist_ok=True)
    for row in rows:
        name = f"eval-{row['variant']}-{_slug(row['tracker'])}-seed{row['seed']}"
        keys = ("variant", "temporal_attention", "spatial_attention", "tracker", "seed")
        config = {k: row[k] for k in keys}
        run = wandb.init(project="hvps-lightning", group=group, name=name, dir=out / "wandb", mode=resolved,
                         job_type="ablation-eval", config=config)  # fmt: skip
        try:
            run.log({f"ablation/{k}": row[k] for k in METRICS if isinstance(row.get(k), (int, float))})
        finally:
            run.finish()
    run = wandb.init(project="hvps-lightning", group=group, name="ablation-summary", dir=out / "wandb",
                     mode=resolved, job_type="ablation-summary")  # fmt: skip
    try:
        columns = ["variant", "tracker", "seed", *METRICS]
        table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        run.log({"ablation/table": table, "ablation/plot": wandb.Image(str(out / "ablation.png"))})
    finally:
        run.finish()
