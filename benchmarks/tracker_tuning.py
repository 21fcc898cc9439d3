"""Tune the tracker's shipped defaults on simulated *training* scenes (never the benchmark's).

The scenes are :mod:`hvps_lightning.tracking.scenes` workloads drawn with training seeds
(100, 101 by default; ``benchmarks/tracker_quality.py`` measures on seed 0, and the demo's
validation sequence 0002 is never used). Optuna's TPE sampler searches the ranges of
``TrackerConfig.search_space()`` (restricted to ``--params``), starting from the current
defaults; the objective is the mean over scenes of ``(IDF1 + HOTA) / 2`` from the project's MOTS
metrics on masks. The defaults in ``hvps_lightning/tracking/config.py`` come from a run of
this script (rounded); the README's tracker section says which.

Prints one line per trial, then one JSON line ``{"best": {...}, "value": .., "default_value": ..}``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import optuna  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracker_quality import mask_metrics  # noqa: E402

from hvps_lightning.errors import HVPSError  # noqa: E402
from hvps_lightning.sweeps.space import restrict_space, suggest_params  # noqa: E402
from hvps_lightning.tracking.config import TrackerConfig  # noqa: E402
from hvps_lightning.tracking.scenes import WORKLOADS, simulate_scene  # noqa: E402
from hvps_lightning.tracking.tracker import track_sequence  # noqa: E402

DEFAULT_PARAMS = [
    "long_term_frames",
    "reid_max_distance",
    "reid_ratio",
    "reid_max_centre_distance",
    "reid_centre_distance_per_frame",
    "tracklet_reid_frames",
    "short_term_frames",
    "short_term_max_embedding_distance",
    "short_term_min_iou",
    "max_embedding_distance",
    "appearance_update_max_distance",
    "appearance_update_max_overlap",
    "iou_cost_weight",
    "age_cost",
    "embedding_momentum",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--params", nargs="+", default=DEFAULT_PARAMS)
    args = parser.parse_args()
    if 0 in args.seeds:
        parser.error("--seeds: seed 0 is the benchmark's test scene; tune on other seeds")

    scenes = [
        simulate_scene(WORKLOADS[name].replace(num_frames=args.frames), seed=seed)
        for name in WORKLOADS
        for seed in args.seeds
    ]
    base = TrackerConfig()
    space = restrict_space(TrackerConfig.search_space(), args.params)

    def score(config: TrackerConfig) -> float:
        values = []
        for scene in scenes:
            metrics = mask_metrics(scene.gt, track_sequence(scene.detections, config))
            values.append((metrics["IDF1"] + metrics["HOTA"]) / 2)
        return sum(values) / len(values)

    def objective(trial: optuna.Trial) -> float:
        config = base.replace(**suggest_params(trial, space))
        value = score(config)
        print(json.dumps({"trial": trial.number, "value": round(value, 4), **trial.params}), flush=True)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial({name: getattr(base, name) for name in space})
    study.optimize(objective, n_trials=args.trials, catch=(HVPSError,))
    default_value = study.trials[0].value
    print(json.dumps({"best": study.best_params, "value": study.best_value, "default_value": default_value}))


if __name__ == "__main__":
    main()
