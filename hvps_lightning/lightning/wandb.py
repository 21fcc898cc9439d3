"""Weights & Biases logging: offline unless an API key is configured.

``HVPSWandbLogger`` is Lightning's ``WandbLogger`` with a ``mode`` switch whose default,
``auto``, runs online only when an API key is set (``WANDB_API_KEY`` or a ``~/.netrc`` entry
for api.wandb.ai) and offline otherwise, so nothing blocks on a login prompt without network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger

from hvps_lightning.errors import HVPSError

WandbMode = Literal["auto", "online", "offline", "disabled"]


def wandb_has_api_key() -> bool:
    """Return whether W&B credentials are configured (environment or ``~/.netrc``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_wandb_mode(mode: WandbMode = "auto") -> Literal["online", "offline", "disabled"]:
    """Turn ``auto`` into ``online`` or ``offline``; ``WANDB_MODE`` in the environment wins.

    Example:
        >>> resolve_wandb_mode("offline")
        'offline'
    """
    env = os.environ.get("WANDB_MODE")
    if mode == "auto" and env in ("online", "offline", "disabled"):
        return env  # type: ignore[return-value]
    if mode == "auto":
        return "online" if wandb_has_api_key() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise HVPSError(f"--mode: unknown W&B mode {mode!r}; use auto, online, offline or disabled")
    return mode


class HVPSWandbLogger(WandbLogger):
    """``WandbLogger`` that goes offline by itself when no API key is configured.

    Args:
        mode: ``auto`` (online with an API key, else offline), ``online``, ``offline`` or ``disabled``.
        project: W&B project name.
        save_dir: where the local run folder (``wandb/``) is written.
        name: run name.
        group: run group (ablation and sweep runs of one grid share a group).
        tags: run tags.
        log_model: upload checkpoints as artifacts (online runs).
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
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        resolved = resolve_wandb_mode(mode)
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        if resolved == "disabled":
            kwargs["mode"] = "disabled"
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=resolved == "offline",
            log_model=log_model,
            group=group,
            tags=tags,
            **kwargs,
        )
