"""``hvps demo``: the whole HVPS recipe, end to end, on generated data, on a CPU.

1. ``hvps synth`` writes the three presets (KITTI panoptic, KITTI-STEP, MOTChallenge-STEP).
2. Staged finetuning, for the MOTS network and the semantic segmenter alike:
   ``hvps fit --config stages/<stage>/<model> --config demo/<model>
   --model.init_args.init_from <previous stage's checkpoint>``.
3. ``hvps predict`` of the MOTChallenge-STEP validation sequence (0002) with both final
   models: a detection cache and a semantic cache.
4. ``hvps track`` (IA-MOT tracker + fusion): ``tracked/step/<seq>/*.png`` and ``tracked/mots/<seq>.txt``.
5. ``hvps evaluate step`` and ``hvps evaluate mots`` against the generated ground truth.
   Then ``hvps bundle`` writes both final models as ``<out>/model.hvps`` and ``hvps infer`` runs it
   on the validation frames as a plain folder (``<out>/infer``, same STQ).
6. An overlay GIF per sequence, ``results.json``, a W&B (offline) summary run and a table.

Every command is written to ``<out>/commands.sh``. A rerun never overwrites an earlier one:
it writes to ``<out>-2``, ``<out>-3``... and says so.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.pipeline import (
    GT_FOLDER,
    STAGE_PRESETS,
    VAL_SEQUENCE,
    CommandRunner,
    check_wandb_mode,
    evaluate_val_sequence,
    fresh_output_dir,
    read_json,
    render_overlays,
    synth_sequences,
)
from hvps_lightning.cli.progress import add_quiet_argument
from hvps_lightning.io import CONFIGS_DIR, last_checkpoint, write_json


@dataclass(frozen=True)
class DemoBudget:
    """How much data and training a demo run gets."""

    frames: dict[str, int]
    sequences: dict[str, int]
    mots_steps: dict[str, int]
    semantic_steps: dict[str, int]


FULL = DemoBudget(
    # kitti_panoptic: many cheap scenes (synth is ~70 frames/s) give the early stages varied people
    # and backgrounds
    frames={"kitti_panoptic": 24, "kitti_step": 40, "motchallenge_step": 60},
    # MOTChallenge-STEP: 0002 (val) and 0009 plus three more training sequences, so the
    # detector sees more than ten people and generalises to the val sequence
    sequences={"kitti_panoptic": 12, "kitti_step": 3, "motchallenge_step": 5},
    mots_steps={"kitti_panoptic": 200, "kitti_step": 60, "mot_step": 480},
    # the semantic model's mot_step budget: 140 steps left it at SQ 58.9 (building/sidewalk mixed
    # up, vegetation IoU 0 on 0002); 200 steps reached SQ 85.4 for 30 s more
    semantic_steps={"kitti_panoptic": 100, "kitti_step": 30, "mot_step": 200},
)
FAST = DemoBudget(
    frames={"kitti_panoptic": 6, "kitti_step": 10, "motchallenge_step": 20},
    sequences={"kitti_panoptic": 2, "kitti_step": 2, "motchallenge_step": 2},
    mots_steps={"kitti_panoptic": 8, "kitti_step": 8, "mot_step": 40},
    semantic_steps={"kitti_panoptic": 5, "kitti_step": 5, "mot_step": 20},
)


def build_parser() -> ArgumentParser:
    """The ``hvps demo`` argument parser."""
    parser = ArgumentParser(
        prog="hvps demo",
        description="End-to-end HVPS demo on generated data: synth -> staged finetuning of the MOTS "
        "and semantic models -> predict -> track + fuse -> STQ / MOTS metrics.",
    )
    parser.add_argument(
        "--fast", action="store_true", help="a smoke run of about a minute (tiny budgets; metrics near zero)"
    )
    parser.add_argument("--out", type=str, default="outputs/demo", help="output folder (never overwritten)")
    parser.add_argument("--data-root", type=str, default="data/demo", help="where the generated datasets go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training")
    parser.add_argument(
        "--wandb",
        type=str,
        default="auto",
        help="W&B mode: auto (offline without an API key), online, offline or disabled",
    )
    add_quiet_argument(parser)
    return parser


def run(cfg: Namespace) -> int:
    """Run the demo; print the results table; return 0."""
    from rich.console import Console

    console = Console(stderr=False, quiet=cfg.quiet)
    quiet = ["--quiet"] if cfg.quiet else []
    budget = FAST if cfg.fast else FULL
    out = fresh_output_dir(cfg.out)
    if out != Path(cfg.out):
        console.print(f"[yellow]{cfg.out} holds an earlier run (kept); this run writes to {out}[/yellow]")
    check_wandb_mode(cfg.wandb)
    data_root = Path(cfg.data_root)
    runner = CommandRunner(out, console=console)
    runner.total = 3 + 2 * len(STAGE_PRESETS) + 2 + 1 + 2 + INFER_STEPS
    started = time.perf_counter()

    # 1. data
    roots: dict[str, Path] = {}
    for preset in STAGE_PRESETS.values():
        roots[preset] = data_root / preset
        runner.run(
            f"synth {preset}",
            ["synth", "--preset", preset, "--out", roots[preset], "--seed", cfg.seed,
             "--frames", budget.frames[preset], "--sequences", budget.sequences[preset], *quiet],
        )  # fmt: skip

    # 2. staged finetuning of both models
    common = ["--seed_everything", cfg.seed, "--trainer.logger.init_args.save_dir", out / "wandb",
              "--trainer.logger.init_args.mode", cfg.wandb]  # fmt: skip
    if cfg.quiet:
        common += ["--trainer.enable_progress_bar", "false"]
    checkpoints: dict[str, Path] = {}
    for model, steps in (("mots", budget.mots_steps), ("semantic", budget.semantic_steps)):
        previous: Path | None = None
        for stage, preset in STAGE_PRESETS.items():
            run_dir = out / "runs" / stage / model
            argv = ["fit", "--config", f"stages/{stage}/{model}",
                    "--config", f"demo/{model}",
                    "--data.init_args.root", roots[preset], "--trainer.default_root_dir", run_dir,
                    "--trainer.max_steps", steps[stage], *common,
                    # the demo configs' OneCycleLR counts steps: one cycle per stage
                    "--model.init_args.lr_scheduler.init_args.total_steps", steps[stage]]  # fmt: skip
            if previous is not None:
                argv += ["--model.init_args.init_from", previous]
            if preset == "motchallenge_step":  # every generated training sequence, not only 0009
                train = synth_sequences(roots[preset], "train")
                argv += ["--data.init_args.sequences", json.dumps({"train": train})]
            runner.run(f"fit {model} {stage}", argv)
            previous = last_checkpoint(run_dir)
        assert previous is not None
        checkpoints[model] = previous

    # 3. predict the validation sequence with the final models
    mot_root = roots["motchallenge_step"]
    cache = out / "cache"
    for model, writer in (("mots", "detections"), ("semantic", "semantic")):
        runner.run(
            f"predict {model}",
            ["predict", "--config", f"stages/mot_step/{model}",
             "--config", f"demo/{model}",
             "--config", f"predict/{model}",
             "--data.init_args.root", mot_root, "--trainer.default_root_dir", out / "runs" / "predict",
             "--trainer.callbacks.init_args.output_dir", cache / writer, "--ckpt_path", checkpoints[model],
             *common],
        )  # fmt: skip

    # 4. track + fuse
    tracked = out / "tracked"
    runner.run(
        "track",
        ["track", "--detections", cache / "detections", "--semantic", cache / "semantic", "--out", tracked,
         "--tracker-config", "tracker/default", "--dataset", "motchallenge_step", *quiet],
    )  # fmt: skip

    # 5. evaluate against the generated ground truth of the validation sequence
    evaluate_val_sequence(
        runner, mot_root, tracked, out / "eval_step.json", out / "eval_mots.json", quiet=cfg.quiet
    )

    # 5b. the same models as one bundle, run by `hvps infer` on the validation frames
    infer = bundle_and_infer(
        runner, out, checkpoints, mot_root, CONFIGS_DIR / "tracker" / "default.yaml", cfg.quiet
    )

    # 6. overlays, results, W&B summary, table
    gifs = {}
    for seq_dir in sorted((tracked / "step").iterdir()):
        gifs[seq_dir.name] = render_overlays(
            mot_root / "images" / GT_FOLDER / seq_dir.name, seq_dir, "motchallenge_step",
            out / "viz" / f"{seq_dir.name}.gif",
        )  # fmt: skip
    step_eval, mots_eval = read_json(out / "eval_step.json"), read_json(out / "eval_mots.json")
    timings = runner.timings()
    timings["wall"] = round(time.perf_counter() - started, 2)
    results = {
        "stq": step_eval["stq"],
        "aq": step_eval["aq"],
        "sq": step_eval["sq"],
        "mots": mots_eval["combined"],
        "iou_per_class": step_eval["iou_per_class"],
        "per_sequence": step_eval["per_sequence"],
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "budget": "fast" if cfg.fast else "full",
        "infer": infer,
        "timings": timings,
    }
    write_json(out / "results.json", results)
    log_results_to_wandb(out, results, gifs, mode=cfg.wandb)
    print_results(Console(stderr=False), out, results)  # the results also with --quiet
    return 0


#: runner steps of :func:`bundle_and_infer`
INFER_STEPS = 4


def bundle_and_infer(
    runner: CommandRunner,
    out: Path,
    checkpoints: dict[str, Path],
    mot_root: Path,
    tracker_config: Path,
    quiet: bool = False,
) -> dict[str, Any]:
    """``hvps bundle`` the final models into ``<out>/model.hvps``, ``hvps infer`` it on the validation frames.

    The frames are read as a plain folder (``images/train/<val seq>``), and the output in
    ``<out>/infer`` is scored like the tracked output: its STQ equals the demo's (same networks,
    same frames, same conversions, tracker and fusion). Camera motion is off because the demo's
    detection cache holds none (``hvps predict`` does not estimate it there).

    Returns:
        ``{"model", "out", "stq", "same_stq_as_track"}`` for ``results.json``.
    """
    model = out / "model.hvps"
    runner.run(
        "bundle",
        ["bundle", "--mots-checkpoint", checkpoints["mots"], "--semantic-checkpoint", checkpoints["semantic"],
         "--tracker-config", tracker_config, "--out", model],
    )  # fmt: skip
    infer_out, frames = out / "infer", mot_root / "images" / GT_FOLDER / VAL_SEQUENCE
    runner.run(
        "infer",
        ["infer", "--model", model, "--input", frames, "--out", infer_out, "--save", "step,mots",
         "--camera-motion", "off", "--quiet"],
    )  # fmt: skip
    step_json = infer_out / "eval_step.json"
    evaluate_val_sequence(
        runner, mot_root, infer_out, step_json, infer_out / "eval_mots.json", " (infer)", quiet
    )
    stq = read_json(step_json)["stq"]
    same = stq == read_json(out / "eval_step.json")["stq"]
    if not same and runner.console is not None:
        runner.console.print(f"[yellow]hvps infer's STQ {stq} differs from the tracked output's[/yellow]")
    return {"model": str(model), "out": str(infer_out), "stq": stq, "same_stq_as_track": same}


def log_results_to_wandb(out: Path, results: dict[str, Any], gifs: dict[str, Path], mode: str) -> None:
    """One W&B run with the final metrics, per-class IoU and the overlay GIFs."""
    import wandb

    from hvps_lightning.wandb_io import resolve_wandb_mode

    resolved = resolve_wandb_mode(mode)
    os.makedirs(out / "wandb", exist_ok=True)
    run = wandb.init(
        project="hvps-lightning",
        group="demo",
        name=f"demo-results-{out.name}",
        dir=out / "wandb",
        mode=resolved,
        job_type="evaluation",
        config={"budget": results["budget"]},
    )
    try:
        metrics: dict[str, Any] = {f"demo/{k}": results[k] for k in ("stq", "aq", "sq")}
        metrics.update({f"demo/mots/{k}": v for k, v in results["mots"].items()})
        metrics.update({f"demo/iou/{k}": v for k, v in results["iou_per_class"].items() if v is not None})
        metrics.update({f"demo/time/{k}": v for k, v in results["timings"].items()})
        for seq, gif in gifs.items():
            metrics[f"demo/overlay/{seq}"] = wandb.Video(str(gif), format="gif")
        run.log(metrics)
        for key in ("stq", "aq", "sq"):
            run.summary[key] = results[key]
    finally:
        run.finish()


def _pct(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{100 * float(value):.1f}"


def print_results(console: Any, out: Path, results: dict[str, Any]) -> None:
    """The closing table."""
    from rich.table import Table

    table = Table(title=f"HVPS demo ({results['budget']}) on generated MOTChallenge-STEP {VAL_SEQUENCE}")
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    for key in ("stq", "aq", "sq"):
        table.add_row(key.upper(), _pct(results[key]))
    for key in ("sMOTSA", "MOTSA", "MOTSP", "IDF1", "HOTA"):
        if key in results["mots"]:
            table.add_row(key, _pct(results["mots"][key]))
    table.add_row("IDSW", str(results["mots"].get("IDSW", "n/a")))
    table.add_row("time (min)", f"{results['timings']['wall'] / 60:.1f}")
    console.print(table)
    console.print(
        f"outputs in {out}: results.json, tracked/step/<seq>/*.png, tracked/mots/<seq>.txt, viz/<seq>.gif, "
        f"model.hvps (both models: hvps infer --model), infer/ (its output on {VAL_SEQUENCE}), "
        f"wandb/, runs/ (checkpoints), commands.sh (the commands above)"
    )
