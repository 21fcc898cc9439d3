r"""``hvps infer``: trained models on any video, folder of frames or glob: STEP PNGs, MOTS txt, overlay video.

Example::

    hvps infer --model model.hvps --input street.mp4 --out runs/street
    hvps infer --model model.hvps --input "frames/*.jpg" --out runs/frames --save step,mots,json \\
        --image-size 384 640 --every 2 --device cuda

Streams the input through :class:`~hvps_lightning.inference.Pipeline` (MOTS network with the
temporal feature cache, semantic network, tracker, fusion) and writes each frame as it is
done (:mod:`hvps_lightning.inference.outputs`): ``step/<seq>/<frame>.png``, ``mots/<seq>.txt``,
``video/<seq>.mp4``, ``tracks/<seq>.jsonl`` and ``summary.json``. Ctrl-C once finishes the
frames read so far and closes every output (each file complete, the same frames in all);
twice aborts, leaving the complete files only.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.progress import add_quiet_argument, bars_enabled


def build_parser() -> ArgumentParser:
    """The ``hvps infer`` argument parser."""
    parser = ArgumentParser(
        description="Run trained models on a video file (mp4, avi, mov, ...), a folder of frames (jpg/png, "
        "natural order) or a glob: STEP panoptic PNGs, MOTS txt, an overlay video and per-frame JSON."
    )
    parser.add_argument(
        "--model", type=str | None, default=None, help="a model bundle (hvps bundle), or wandb-artifact://..."
    )
    parser.add_argument(
        "--mots-checkpoint", type=str | None, default=None, help="instead of --model: a MOTSModule checkpoint"
    )
    parser.add_argument(
        "--semantic-checkpoint",
        type=str | None,
        default=None,
        help="instead of --model: a SemanticModule checkpoint",
    )
    parser.add_argument(
        "--tracker-config",
        type=str | None,
        default=None,
        help="tracker YAML (default: the bundle's; with checkpoints, the built-in defaults)",
    )
    parser.add_argument("--input", type=str, required=True, help="video file, folder of images, or glob")
    parser.add_argument("--out", type=str, required=True, help="output folder (must be empty or new)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out (its files of the same names are replaced)",
    )
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-frames", type=int, default=4, help="frames per semantic-network batch")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        help="HEIGHT WIDTH both networks run at (default: their training size, else the input's)",
    )
    parser.add_argument("--start", type=int, default=0, help="index of the first frame")
    parser.add_argument("--end", type=int | None, default=None, help="index one past the last frame")
    parser.add_argument("--every", type=int, default=1, help="use every N-th frame")
    parser.add_argument(
        "--save", type=str, default="step,mots,video", help="comma-separated outputs: step,mots,video,json"
    )
    parser.add_argument(
        "--fps",
        type=float | None,
        default=None,
        help="overlay video frame rate (default: the input's, else 10)",
    )
    parser.add_argument(
        "--sequence", type=str | None, default=None, help="sequence name in the outputs (default: input name)"
    )
    parser.add_argument(
        "--camera-motion",
        type=str,
        default="auto",
        help="estimate camera motion for the tracker: auto (the tracker config's camera_motion), on, off",
    )
    add_quiet_argument(parser)
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps infer``; return 0, or 130 when stopped by Ctrl-C (outputs complete up to there)."""
    from hvps_lightning.errors import HVPSError
    from hvps_lightning.inference.model import InferenceModel
    from hvps_lightning.inference.outputs import StopRequest, parse_save, run_to_folder
    from hvps_lightning.inference.pipeline import Pipeline
    from hvps_lightning.io import check_output_folder

    checkpoints = (cfg.mots_checkpoint, cfg.semantic_checkpoint)
    if cfg.model is not None and any(checkpoints):
        raise HVPSError(
            "--model: give either a bundle or --mots-checkpoint and --semantic-checkpoint, not both"
        )
    if cfg.model is None and not all(checkpoints):
        raise HVPSError("--model: required (or both --mots-checkpoint and --semantic-checkpoint)")
    if cfg.camera_motion not in ("auto", "on", "off"):
        raise HVPSError(f"--camera-motion {cfg.camera_motion}: expected auto, on or off")
    save = parse_save(cfg.save)
    if cfg.fps is not None and cfg.fps <= 0:
        raise HVPSError(f"--fps {cfg.fps}: must be > 0")
    out = check_output_folder(cfg.out, cfg.overwrite)

    # Everything that can be wrong with the model or the input fails here, before --out is touched.
    from hvps_lightning.wandb_io import resolve_path

    if cfg.model is not None:
        model = InferenceModel.load(resolve_path(cfg.model, "bundle", "--model"))
        if cfg.tracker_config is not None:
            from hvps_lightning.inference.model import as_tracker_config

            model.tracker = as_tracker_config(cfg.tracker_config)
    else:
        model = InferenceModel.from_checkpoints(
            resolve_path(cfg.mots_checkpoint, "model", "--mots-checkpoint"),
            resolve_path(cfg.semantic_checkpoint, "model", "--semantic-checkpoint"),
            cfg.tracker_config,
        )
    camera = None if cfg.camera_motion == "auto" else cfg.camera_motion == "on"
    pipeline = Pipeline(
        model,
        device=cfg.device,
        batch_frames=cfg.batch_frames,
        image_size=tuple(cfg.image_size) if cfg.image_size is not None else None,
        camera_motion=camera,
    )
    frames = pipeline.open(cfg.input, cfg.start, cfg.end, cfg.every)
    settings = {
        "input": cfg.input,
        "model": cfg.model or {"mots": cfg.mots_checkpoint, "semantic": cfg.semantic_checkpoint},
        "device": str(pipeline.device),
        "image_size": {"mots": pipeline.mots_size, "semantic": pipeline.semantic_size},
        "camera_motion": pipeline.camera_motion,
        "start": cfg.start,
        "end": cfg.end,
        "every": cfg.every,
    }
    with StopRequest() as stop:
        summary = run_to_folder(
            pipeline, frames, out, save, cfg.fps, cfg.sequence, bars_enabled(cfg.quiet), stop, settings
        )
    rate = f"{summary.frames_per_s:.2f} frames/s"
    written = ", ".join(summary.outputs) or "nothing"
    if summary.stopped:
        print(
            f"hvps infer: stopped by Ctrl-C after frame {summary.last_frame} ({summary.frames} frames, "
            f"{summary.seconds:.1f} s, {rate}); every file in {out} is complete up to it: {written}"
        )
        return 130
    print(
        f"hvps infer: {summary.frames} frames of {summary.sequence}, {summary.tracks} tracks, "
        f"{summary.seconds:.1f} s ({rate}): {written} in {out}"
    )
    return 0
