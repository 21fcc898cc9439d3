"""Weights & Biases logging: offline unless an API key is configured; model artifacts when online.

``HVPSWandbLogger`` is Lightning's ``WandbLogger`` with a ``mode`` switch whose default,
``auto``, runs online only when an API key is set (``WANDB_API_KEY`` or a ``~/.netrc`` entry
for api.wandb.ai) and offline otherwise, so nothing blocks on a login prompt without network
(the modes are :mod:`hvps_lightning.wandb_io`'s, shared by every command). ``log_model``
uploads the checkpoints as ``model`` artifacts of the run when it is online (Lightning's own
mechanism; an offline run cannot upload them and keeps them on disk). A run declares the
artifacts the process resolved from ``wandb-artifact://`` references as its inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from hvps_lightning.wandb_io import WandbMode, resolve_wandb_mode, use_resolved_artifacts

__all__ = ["HVPSWandbLogger", "WandbMode", "resolve_wandb_mode"]


class HVPSWandbLogger(WandbLogger):
    """``WandbLogger`` that goes offline by itself when no API key is configured.

    Args:
        mode: ``auto`` (online with an API key, else offline), ``online``, ``offline`` or ``disabled``.
        project: W&B project name.
        save_dir: where the local run folder (``wandb/``) is written.
        name: run name.
        group: run group (ablation and sweep runs of one grid share a group).
        tags: run tags.
        job_type: the run's job type (``train``, ``predict``...).
        log_model: upload checkpoints as ``model`` artifacts (``True``: at the end of training;
            ``all``: each one when written); only online runs upload.
        **kwargs: passed on to ``WandbLogger`` / ``wandb.init``.
    """

    def __init__(
        self,
        mode: WandbMode = "auto",
        project: str = "hvps-lightning",
        save_dir: str = "outputs/wandb",
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        job_type: str | None = None,
        log_model: bool | Literal["all"] = False,
        **kwargs: Any,
    ) -> None:
        resolved = resolve_wandb_mode(mode, option="mode")
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        if resolved == "disabled":
            kwargs["mode"] = "disabled"
        if log_model and resolved != "online":
            rank_zero_info(f"W&B is {resolved}: checkpoints are not uploaded as artifacts (log_model)")
        self.resolved_mode = resolved
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=resolved == "offline",
            log_model=log_model if resolved == "online" else False,
            group=group,
            tags=tags,
            job_type=job_type,
            **kwargs,
        )
        self._inputs_declared = False

    def resume_run(self, run_id: str) -> None:
        """Log into the existing run ``run_id`` (a resumed training) instead of starting a new one.

        Must be called before the run starts (before ``experiment`` is first used).
        """
        if self._experiment is not None:
            raise RuntimeError("resume_run: the W&B run has already started")
        self._wandb_init["id"] = run_id
        self._wandb_init["resume"] = "allow"
        self._id = run_id

    @property
    def experiment(self) -> Any:
        """The W&B run; on first use it declares the resolved ``wandb-artifact://`` inputs."""
        run = super().experiment
        if not self._inputs_declared and run is not None:
            self._inputs_declared = True
            use_resolved_artifacts(run)
        return run
