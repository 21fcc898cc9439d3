"""Tracker hyperparameter sweeps on cached detections (``hvps sweep``).

* :mod:`~hvps_lightning.sweeps.study`: the Optuna study (create/resume, samplers, worker
  processes, failed trials, the ``--trials`` budget).
* :mod:`~hvps_lightning.sweeps.storage`: storage URLs (journal file, RDB, Redis).
* :mod:`~hvps_lightning.sweeps.space`: ``TrackerConfig.search_space()`` -> Optuna / W&B.
* :mod:`~hvps_lightning.sweeps.objective`: one trial = tracker over the cache + the metric.
* :mod:`~hvps_lightning.sweeps.outputs`: best.yaml, trials.csv, summary.json, plots.
* :mod:`~hvps_lightning.sweeps.wandb_log` / :mod:`~hvps_lightning.sweeps.wandb_export`: W&B.
* :mod:`~hvps_lightning.cli.sweep`: ``hvps sweep tracker`` and ``hvps sweep trial``.

Submodules are imported on use so that ``import hvps_lightning.sweeps`` stays light.
"""
