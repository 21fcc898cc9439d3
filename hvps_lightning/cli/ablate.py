"""``hvps ablate``: the TA/SA grid and the tracker's retrieval/re-ID switches, with intervals and tests.

Every variant of the MOTS network (temporal attention on/off x spatial attention on/off) is
trained on the same generated MOTChallenge-STEP data with the same budget, once per seed
(default 3 seeds; the shipped configs ``stages/mot_step/mots`` + ``demo/mots`` +
``ablations/ta_sa/<variant>``), predicts the validation sequence, and is tracked and scored by
the same tracker through the one evaluation path. The semantic part of the panoptic output is
the ground truth, so AQ, sMOTSA and IDF1 measure the MOTS network and the tracker alone. The
tracker switches (short-term retrieval, long-term re-ID) are then ablated on the full model's
detections of every seed.

For every metric the outputs give the mean over seeds with its 95 % confidence interval, and
compare each variant with the full model (TA + SA + full tracker): the difference paired by
seed (t interval and paired t-test) and by blocks of frames (a paired block bootstrap); a
difference is marked resolved only when every interval excludes zero
(:mod:`hvps_lightning.evaluation.ablation`, :mod:`hvps_lightning.evaluation.statistics`).

Writes ``ablation.csv`` (one row per run), ``ablation.json`` (every interval and test),
``ablation.md`` (the tables), ``ablation.png`` (means with intervals) and one W&B group (a run
per evaluation and a summary run with the tables).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.pipeline import (
    GT_FOLDER,
    VAL_SEQUENCE,
    CommandRunner,
    check_wandb_mode,
    fresh_output_dir,
    synth_sequences,
)
from hvps_lightning.cli.progress import add_quiet_argument
from hvps_lightning.errors import HVPSError
from hvps_lightning.io import atomic_open, last_checkpoint, write_json

if TYPE_CHECKING:
    from hvps_lightning.evaluation.ablation import AblationAnalysis, AblationRun

TA_SA_VARIANTS: tuple[tuple[bool, bool], ...] = ((True, True), (True, False), (False, True), (False, False))
TRACKER_VARIANTS: dict[str, dict[str, bool]] = {
    "full tracker": {},
    "no short-term retrieval": {"short_term_enabled": False},
    "no long-term re-ID": {"long_term_enabled": False},
    "neither": {"short_term_enabled": False, "long_term_enabled": False},
}
METRICS = ("aq", "stq", "sMOTSA", "MOTSA", "IDF1", "HOTA", "IDSW")
#: metric -> the score whose block statistics the frame-block bootstrap resamples (STQ* has none)
BLOCK_SCORES = {"aq": "aq", **{m: f"mots/pedestrian/{m}" for m in METRICS[2:]}}
#: metrics in % in the tables (IDSW is a count)
PERCENT = frozenset(METRICS) - {"IDSW"}
#: the variant every other is compared with
REFERENCE = "TA on / SA on / full tracker"


def variant_name(ta: bool, sa: bool) -> str:
    """File-name form of a TA/SA variant, e.g. ``ta_on_sa_off``."""
    return f"ta_{'on' if ta else 'off'}_sa_{'on' if sa else 'off'}"


def variant_label(ta: bool, sa: bool, tracker: str) -> str:
    """Table form of a variant, e.g. ``TA on / SA off / full tracker``."""
    return f"TA {'on' if ta else 'off'} / SA {'on' if sa else 'off'} / {tracker}"


def build_parser() -> ArgumentParser:
    """The ``hvps ablate`` argument parser."""
    parser = ArgumentParser(
        prog="hvps ablate",
        description="Train the four TA/SA variants of the MOTS network on the same data and budget for each "
        "seed, track them with the same tracker, ablate the tracker's retrieval/re-ID switches, and report "
        "every metric as mean +- 95 % interval over seeds with paired tests against the full model "
        "(ablation.csv, ablation.json, ablation.md, ablation.png).",
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
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="training seeds, one run per variant and seed (data uses the first); intervals need >= 2",
    )
    parser.add_argument(
        "--sequences", type=int, default=5, help="generated sequences: 0002 (val), the rest for training"
    )
    parser.add_argument(
        "--block-frames",
        type=int,
        default=10,
        help="frames per block of the frame-block bootstrap (the val sequence is cut into such blocks)",
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples per comparison")
    parser.add_argument(
        "--init-from", type=str | None, default=None, help="start every variant from this ckpt"
    )
    parser.add_argument("--fast", action="store_true", help="smoke run: 10 steps, 12 frames by default")
    parser.add_argument(
        "--wandb", type=str, default="auto", help="W&B mode: auto, online, offline or disabled"
    )
    add_quiet_argument(parser)
    return parser


def run(cfg: Namespace) -> int:
    """Run the grid; write the tables, the plot, the CSV and the JSON; return 0."""
    from rich.console import Console

    console = Console(quiet=cfg.quiet)
    steps = cfg.steps if cfg.steps is not None else (10 if cfg.fast else 300)
    frames = cfg.frames if cfg.frames is not None else (12 if cfg.fast else 60)
    if steps < 1 or frames < 3:
        raise HVPSError(f"--steps must be >= 1 and --frames >= 3, got {steps} and {frames}")
    if cfg.block_frames < 1 or cfg.bootstrap < 100:
        raise HVPSError(
            f"--block-frames must be >= 1 and --bootstrap >= 100, got {cfg.block_frames}, {cfg.bootstrap}"
        )
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise HVPSError(f"--seeds: {cfg.seeds} repeats a seed")
    check_wandb_mode(cfg.wandb)
    out = fresh_output_dir(cfg.out)
    if out != Path(cfg.out):
        console.print(f"[yellow]{cfg.out} holds an earlier run (kept); this run writes to {out}[/yellow]")
    runner = CommandRunner(out, console=console)
    runner.total = 1 + len(cfg.seeds) * len(TA_SA_VARIANTS) * 2
    group = f"ablation-{out.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(cfg.data_root) / "motchallenge_step"
    quiet = ["--quiet"] if cfg.quiet else []
    lightning_quiet = ["--trainer.enable_progress_bar", "false"] if cfg.quiet else []
    runner.run("synth", ["synth", "--preset", "motchallenge_step", "--out", root, "--seed", cfg.seeds[0],
                         "--frames", frames, "--sequences", cfg.sequences, *quiet])  # fmt: skip
    train_sequences = synth_sequences(root, "train")
    runs: list[AblationRun] = []
    rows: list[dict[str, Any]] = []
    full_caches: dict[int, Path] = {}
    for seed in cfg.seeds:
        for ta, sa in TA_SA_VARIANTS:
            name = variant_name(ta, sa)
            work = out / "runs" / f"{name}-seed{seed}"
            wandb = ["--trainer.logger.init_args.save_dir", out / "wandb", "--trainer.logger.init_args.mode",
                     cfg.wandb, "--trainer.logger.init_args.group", group]  # fmt: skip
            argv = ["fit", "--config", "stages/mot_step/mots",
                    "--config", "demo/mots",
                    "--config", f"ablations/ta_sa/{name}",
                    "--data.init_args.root", root, "--seed_everything", seed, "--trainer.max_steps", steps,
                    "--trainer.default_root_dir", work, *wandb,
                    "--trainer.logger.init_args.name", f"{name}-seed{seed}",
                    # the demo config's OneCycleLR spans exactly the training steps
                    "--model.init_args.lr_scheduler.init_args.total_steps", steps,
                    "--data.init_args.sequences", json.dumps({"train": train_sequences}),
                    *lightning_quiet]  # fmt: skip
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
                 "--ckpt_path", ckpt, *wandb, "--trainer.logger.init_args.name", f"predict-{name}-seed{seed}",
                 *lightning_quiet],
            )  # fmt: skip
            if ta and sa:
                full_caches[seed] = cache
            label = variant_label(ta, sa, "full tracker")
            result = evaluate_cache(cache, root, None, cfg.block_frames)
            runs.append(_ablation_run(label, seed, result))
            rows.append(_row(label, ta, sa, "full tracker", seed, result, train_seconds=round(seconds, 1)))
    variants = {label: switches for label, switches in TRACKER_VARIANTS.items() if switches}
    for label, seed, result in tracker_variant_results(full_caches, root, variants, out, cfg.block_frames):
        runs.append(_ablation_run(variant_label(True, True, label), seed, result))
        rows.append(_row(variant_label(True, True, label), True, True, label, seed, result))
    analysis = analyse_runs(runs, cfg.bootstrap)
    write_outputs(
        out, rows, analysis, steps=steps, frames=frames, seeds=cfg.seeds, block_frames=cfg.block_frames
    )
    log_to_wandb(out, rows, analysis, group, cfg.wandb)
    console = Console()  # the tables also with --quiet
    console.print((out / "ablation.md").read_text(), markup=False, highlight=False)
    console.print(
        f"outputs in {out}: ablation.csv, ablation.json, ablation.md, ablation.png, wandb/ (group {group})"
    )
    return 0


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("/", "_").replace("-", "")


def write_tracker_variant(default: str | Path, switches: dict[str, Any], path: Path) -> Path:
    """The default tracker config with some parameters changed, as a YAML file."""
    from hvps_lightning.tracking.config import TrackerConfig

    config = dataclasses.replace(TrackerConfig.from_yaml(default), **switches)
    config.to_yaml(path)
    return path


def evaluate_cache(cache: Path, root: Path, tracker: Path | None, block_frames: int | None = None) -> Any:
    """Track the validation sequence of a detection cache and score it (AQ, STQ*, MOTS), in process.

    The semantic half of the fused output is the ground truth, so the numbers measure the MOTS
    network and the tracker alone (STQ* moves with AQ and the person masks only). Returns the
    :class:`~hvps_lightning.evaluation.scoring.EvaluationResult` (with per-block statistics
    when ``block_frames`` is given).
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
    return track_fuse_score(
        {VAL_SEQUENCE: frames},
        GroundTruthSemantic(ground_truth),
        ground_truth,
        config,
        spec=spec,
        block_frames=block_frames,
    )


def ablation_scores(result: Any) -> dict[str, float]:
    """The table's metrics of an evaluation: ``aq``, ``stq`` (STQ*) and the pedestrian MOTS metrics."""
    scores = result.scores
    mots = {
        key: scores[f"mots/pedestrian/{key}"] for key in METRICS[2:] if f"mots/pedestrian/{key}" in scores
    }
    return {"aq": scores["aq"], "stq": scores["stq"], **mots}


def tracker_variant_results(
    caches: Mapping[int, Path],
    root: Path,
    variants: Mapping[str, Mapping[str, Any]],
    out: Path,
    block_frames: int,
) -> list[tuple[str, int, Any]]:
    """Evaluate every tracker variant on every seed's detection cache: ``(label, seed, result)``."""
    results = []
    for label, switches in variants.items():
        tracker_yaml = write_tracker_variant(
            "tracker/default", dict(switches), out / "trackers" / f"{_slug(label)}.yaml"
        )
        for seed, cache in caches.items():
            results.append((label, seed, evaluate_cache(cache, root, tracker_yaml, block_frames)))
    return results


def _ablation_run(label: str, seed: int, result: Any) -> AblationRun:
    from hvps_lightning.evaluation.ablation import AblationRun

    return AblationRun(label, seed, ablation_scores(result), result.blocks)


def _row(
    label: str, ta: bool, sa: bool, tracker: str, seed: int, result: Any, train_seconds: float | str = ""
) -> dict[str, Any]:
    return {"group": "TA/SA" if tracker == "full tracker" else "tracker", "variant": variant_name(ta, sa),
            "label": label, "temporal_attention": ta, "spatial_attention": sa, "tracker": tracker,
            "seed": seed, "train_seconds": train_seconds, **ablation_scores(result)}  # fmt: skip


def analyse_runs(runs: Sequence[AblationRun], bootstrap: int = 2000) -> AblationAnalysis:
    """Intervals of every metric and comparisons with the full model (see the module docstring)."""
    from hvps_lightning.evaluation.ablation import analyse

    return analyse(runs, METRICS, REFERENCE, BLOCK_SCORES, n_resamples=bootstrap)


# --------------------------------------------------------------------------- outputs
def _value(metric: str, value: float) -> float:
    return 100 * value if metric in PERCENT else value


def format_interval(metric: str, interval: Any, signed: bool = False) -> str:
    """``12.3 [10.1, 14.5]`` (``%`` metrics scaled), ``12.3`` with one seed, ``n/a`` without a value."""
    if interval is None or math.isnan(interval.estimate):
        return "n/a"
    digits = 0 if metric == "IDSW" and not interval.available else 1
    sign = "+" if signed else ""
    text = f"{_value(metric, interval.estimate):{sign}.{digits}f}"
    if interval.available:
        text += f" [{_value(metric, interval.low):{sign}.1f}, {_value(metric, interval.high):{sign}.1f}]"
    return text


def write_outputs(
    out: Path,
    rows: list[dict[str, Any]],
    analysis: AblationAnalysis,
    steps: int,
    frames: int,
    seeds: list[int],
    block_frames: int,
) -> None:
    """Write ``ablation.csv``, ``ablation.json``, ``ablation.md`` and ``ablation.png``."""
    fields = ["group", "variant", "label", "temporal_attention", "spatial_attention", "tracker", "seed",
              "train_seconds", *METRICS]  # fmt: skip
    with atomic_open(out / "ablation.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / "ablation.json", analysis_json(analysis, steps=steps, frames=frames, seeds=seeds,
                                                    block_frames=block_frames))  # fmt: skip
    with atomic_open(out / "ablation.md", "w", encoding="utf-8") as handle:
        handle.write(markdown(analysis, steps=steps, frames=frames, seeds=seeds, block_frames=block_frames))
    plot_analysis(analysis, out / "ablation.png")


def markdown(analysis: AblationAnalysis, steps: int, frames: int, seeds: list[int], block_frames: int) -> str:
    """The two tables of ``ablation.md``: means with intervals, and the comparisons with the full model."""
    percent = round(100 * analysis.confidence)
    header = "| variant | " + " | ".join(_title(m) for m in METRICS) + " |"
    rule = "|---|" + "---:|" * len(METRICS)
    lines = [
        f"Ablation on generated MOTChallenge-STEP (val sequence {VAL_SEQUENCE}, {frames} frames), {steps} "
        f"training steps per variant, seeds {', '.join(map(str, seeds))}. Values in % (IDSW: count): "
        f"mean over seeds [{percent} % confidence interval, Student t over {len(seeds)} seeds]"
        f"{'' if len(seeds) > 1 else ' (one seed: no interval)'}. *STQ with the ground-truth semantic map, "
        "so it moves with AQ and the person masks only.",
        "",
        header,
        rule,
    ]
    for variant in analysis.variants:
        cells = [format_interval(m, analysis.intervals[variant][m]) for m in METRICS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Differences from the full model ({analysis.reference}), variant minus full model. Each cell: "
        f"the mean difference over seeds [{percent} % interval paired by seed] {{{percent} % interval of a "
        f"paired bootstrap over blocks of {block_frames} frames, the metric recomputed on resampled "
        "blocks}; "
        "**bold ✓** = resolved: every interval excludes zero (a real difference at this budget); plain = "
        f"within noise. {analysis.n_comparisons} comparisons, no correction for their number.",
        "",
        header,
        rule,
    ]
    for variant, by_metric in analysis.comparisons.items():
        cells = []
        for metric in METRICS:
            comparison = by_metric[metric]
            text = format_interval(metric, comparison.seeds, signed=True)
            if comparison.blocks is not None:
                blocks = comparison.blocks
                text += f" {{{_value(metric, blocks.low):+.1f}, {_value(metric, blocks.high):+.1f}}}"
            cells.append(f"**{text} ✓**" if comparison.resolved else text)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    resolved = [
        f"{variant}: {_title(metric)} {'higher' if c.direction > 0 else 'lower'}"
        for variant, metric, c in analysis.resolved()
    ]
    none = "none (every difference is within the noise of seeds and frames at this budget)."
    lines += ["", "Resolved: " + ("; ".join(resolved) if resolved else none)]
    return "\n".join(lines) + "\n"


def _title(metric: str) -> str:
    return {"aq": "AQ", "stq": "STQ*"}.get(metric, metric)


def analysis_json(analysis: AblationAnalysis, **settings: Any) -> dict[str, Any]:
    """Every interval and comparison as JSON (fractions as measured, not %)."""

    def interval(i: Any) -> dict[str, Any] | None:
        if i is None:
            return None
        return {"estimate": i.estimate, "low": i.low, "high": i.high, "n": i.n, "p_value": i.p_value}

    return {
        **settings,
        "confidence": analysis.confidence,
        "reference": analysis.reference,
        "metrics": analysis.metrics,
        "variants": {
            variant: {
                "seeds": analysis.seeds[variant],
                "metrics": {m: interval(analysis.intervals[variant][m]) for m in analysis.metrics},
                "versus_reference": None if variant == analysis.reference else {
                    m: {"seeds": interval(c.seeds), "blocks": interval(c.blocks), "resolved": c.resolved}
                    for m, c in analysis.comparisons[variant].items()
                },
            }
            for variant in analysis.variants
        },
    }  # fmt: skip


def plot_analysis(analysis: AblationAnalysis, path: Path) -> None:
    """Means of AQ, IDF1 and sMOTSA per variant with their confidence intervals."""
    import numpy as np

    from hvps_lightning.viz.plots import plot_intervals

    keys = ("aq", "IDF1", "sMOTSA")
    table = np.array([[[_value(k, getattr(analysis.intervals[v][k], part)) for k in keys]
                       for v in analysis.variants] for part in ("estimate", "low", "high")])  # fmt: skip
    labels = [v.replace(" / ", "\n", 2) for v in analysis.variants]
    resolved = {(v, m) for v, m, _ in analysis.resolved()}
    labels = [label + (" *" if any((v, k) in resolved for k in keys) else "")
              for label, v in zip(labels, analysis.variants, strict=True)]  # fmt: skip
    plot_intervals(
        labels,
        [_title(k) for k in keys],
        *table,
        path,
        title="HVPS ablation: TA/SA and tracker switches (* = a resolved difference from the full model)",
    )


def log_to_wandb(
    out: Path, rows: list[dict[str, Any]], analysis: AblationAnalysis, group: str, mode: str
) -> None:
    """A finished W&B run per evaluated row (one group) and a summary run with the tables."""
    import wandb

    from hvps_lightning.wandb_io import resolve_wandb_mode

    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return
    os.makedirs(out / "wandb", exist_ok=True)
    for row in rows:
        name = f"eval-{row['variant']}-{_slug(row['tracker'])}-seed{row['seed']}"
        keys = ("variant", "label", "temporal_attention", "spatial_attention", "tracker", "seed")
        config = {k: row[k] for k in keys}
        run = wandb.init(project="hvps-lightning", group=group, name=name, dir=out / "wandb", mode=resolved,
                         job_type="ablation-eval", config=config, reinit="create_new")  # fmt: skip
        try:
            run.log({f"ablation/{k}": row[k] for k in METRICS if isinstance(row.get(k), (int, float))})
        finally:
            run.finish()
    run = wandb.init(project="hvps-lightning", group=group, name="ablation-summary", dir=out / "wandb",
                     mode=resolved, job_type="ablation-summary", reinit="create_new")  # fmt: skip
    try:
        columns = ["label", "seed", *METRICS]
        per_run = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        summary = wandb.Table(
            columns=["variant", "metric", "mean", "low", "high", "seeds"],
            data=[[v, m, i.estimate, i.low, i.high, i.n] for v in analysis.variants
                  for m, i in analysis.intervals[v].items()],
        )  # fmt: skip
        comparisons = wandb.Table(
            columns=["variant", "metric", "difference", "seed_low", "seed_high", "p_value", "block_low",
                     "block_high", "resolved"],
            data=[[v, m, c.seeds.estimate, c.seeds.low, c.seeds.high, c.seeds.p_value,
                   c.blocks.low if c.blocks else None, c.blocks.high if c.blocks else None, c.resolved]
                  for v, by_metric in analysis.comparisons.items() for m, c in by_metric.items()],
        )  # fmt: skip
        run.log({"ablation/runs": per_run, "ablation/intervals": summary, "ablation/comparisons": comparisons,
                 "ablation/plot": wandb.Image(str(out / "ablation.png"))})  # fmt: skip
        run.summary["resolved"] = [f"{v}: {m}" for v, m, _ in analysis.resolved()]
    finally:
        run.finish()
