"""Trained networks out of Lightning checkpoints, read as data: no pickled code, no Lightning import.

A checkpoint of ``MOTSModule`` or ``SemanticModule`` holds the network's configuration
(``hyper_parameters["net"] = {"class_path", "init_args"}``), the task's inference settings
(``mask_threshold``), the DataModule's (``image_size``, ``clip_mode``), the network's weights
(``state_dict["net.*"]``) and what the checkpoint callbacks monitored. :func:`read_checkpoint`
reads them with ``torch.load(weights_only=True)`` and rebuilds the network from the classes
this package allows by name (:data:`NETWORK_CLASSES`), never from a class a file names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.mots.net import MOTSNet
from hvps_lightning.models.semantic.torch_model import SemanticNet

#: network role -> the one class a bundle or checkpoint may build for it
NETWORK_CLASSES: dict[str, type[nn.Module]] = {"mots": MOTSNet, "semantic": SemanticNet}
#: network role -> the LightningModule that trains it (checked against the checkpoint's class)
TASK_CLASSES: dict[str, str] = {"mots": "MOTSModule", "semantic": "SemanticModule"}
#: how far ``init_from`` is followed back through the training stages for the model card
MAX_STAGES = 10


@dataclass
class TrainedNetwork:
    """One network read from a checkpoint.

    Attributes:
        role: ``mots`` or ``semantic``.
        net: the network, built from its saved configuration, weights loaded, in eval mode.
        dataset: the dataset spec name it predicts.
        settings: inference settings: ``image_size`` ((H, W) or ``None`` = native size) and,
            for the MOTS network, ``mask_threshold`` and ``target_index``.
        source: where it came from, for the model card: ``checkpoint``, ``epoch``,
            ``global_step``, ``metrics`` (monitor -> best / last), ``stages`` (this stage and
            the ones it started from, newest first).
    """

    role: str
    net: nn.Module
    dataset: str
    settings: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)


def load_checkpoint_dict(path: str | Path, option: str, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint, with one-line errors naming ``option`` and the file.

    Raises:
        HVPSError: if the file is missing or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise HVPSError(f"{option} {path}: file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for corrupt or non-checkpoint files
        raise HVPSError(f"{option} {path}: not a loadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict):
        raise HVPSError(f"{option} {path}: not a checkpoint (a {type(ckpt).__name__}, expected a dict)")
    return ckpt


def checkpoint_role(ckpt: Mapping[str, Any]) -> str | None:
    """``mots`` or ``semantic`` from the checkpoint's task class (or its network's), else ``None``."""
    hparams = ckpt.get("hyper_parameters") or {}
    task = str(hparams.get("_class_path", ""))
    for role, name in TASK_CLASSES.items():
        if task.rsplit(".", 1)[-1] == name:
            return role
    net = hparams.get("net")
    net_class = str(net.get("class_path", "")) if isinstance(net, Mapping) else ""
    for role, cls in NETWORK_CLASSES.items():
        if net_class.rsplit(".", 1)[-1] == cls.__name__:
            return role
    return None


def build_network(role: str, class_path: str, init_args: Mapping[str, Any], where: str) -> nn.Module:
    """Build the network of ``role`` from its saved class path and constructor arguments.

    Raises:
        HVPSError: naming ``where`` if the class is not the role's network or the arguments do
            not build it (another version's arguments).
    """
    cls = NETWORK_CLASSES[role]
    if not class_path.startswith("hvps_lightning.models.") or class_path.rsplit(".", 1)[-1] != cls.__name__:
        raise HVPSError(f"{where}: the {role} network is a {class_path}, expected a {cls.__name__}")
    try:
        return cls(**dict(init_args))
    except HVPSError as exc:
        raise HVPSError(f"{where}: the {role} network cannot be built: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise HVPSError(f"{where}: the {role} network cannot be built from its arguments ({exc})") from None


def load_network_state(net: nn.Module, state: Mapping[str, Tensor], role: str, where: str) -> None:
    """Load a state dict into a freshly built network, exactly (every key, every shape).

    A MOTS network trained from start weights has its ResNet's BatchNorm frozen
    (``backbone_norm: auto``); its state then lacks their ``num_batches_tracked`` and the
    network is frozen the same way before loading.

    Raises:
        HVPSError: naming ``where`` if keys are missing, unexpected or of another shape.
    """
    if isinstance(net, MOTSNet):
        batch_norm_counters = [
            k
            for k in net.state_dict()
            if k.startswith("backbone.body.") and k.endswith("num_batches_tracked")
        ]
        if batch_norm_counters and not any(k in state for k in batch_norm_counters):
            net.freeze_backbone_norm()
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        raise HVPSError(f"{where}: the {role} weights do not fit the network: {'; '.join(parts)}")
    net.load_state_dict(state, strict=True)


def _stage(ckpt: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """What the model card says of one training stage."""
    hparams = ckpt.get("hyper_parameters") or {}
    data = ckpt.get("datamodule_hyper_parameters") or {}
    return {
        "checkpoint": str(path),
        "dataset": hparams.get("dataset"),
        "finetune_stage": data.get("finetune_stage"),
        "data_root": data.get("root"),
        "image_size": data.get("image_size"),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "pretrained": hparams.get("pretrained"),
        "init_checkpoint": hparams.get("init_checkpoint"),
        "metrics": logged_metrics(ckpt),
    }


def logged_metrics(ckpt: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """What the checkpoint callbacks monitored: ``{metric: {"best": v, "last": v}}`` (values present only)."""
    metrics: dict[str, dict[str, float]] = {}
    for state in (ckpt.get("callbacks") or {}).values():
        if not isinstance(state, Mapping) or not state.get("monitor"):
            continue
        values = {}
        for key, name in (("best_model_score", "best"), ("current_score", "last")):
            value = state.get(key)
            if isinstance(value, Tensor) and value.numel() == 1:
                value = float(value)
            if isinstance(value, float) and math.isfinite(value):
                values[name] = value
        if values:
            metrics.setdefault(str(state["monitor"]), {}).update(values)
    return metrics


def _stages(ckpt: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    """This checkpoint's stage and, following ``init_from`` while the files exist, the earlier ones."""
    stages = [_stage(ckpt, path)]
    previous = (ckpt.get("hyper_parameters") or {}).get("init_from")
    while previous and len(stages) < MAX_STAGES:
        previous_path = Path(previous)
        try:
            earlier = load_checkpoint_dict(previous_path, "init_from", mmap=True)
        except HVPSError:
            stages.append({"checkpoint": str(previous_path), "missing": True})
            break
        stages.append(_stage(earlier, previous_path))
        previous = (earlier.get("hyper_parameters") or {}).get("init_from")
    return stages


def read_checkpoint(path: str | Path, role: str, option: str) -> TrainedNetwork:
    """Read the network of ``role`` (``mots`` or ``semantic``) from a Lightning checkpoint.

    Args:
        path: the checkpoint (``last.ckpt`` of ``hvps fit``).
        role: which network it must hold.
        option: the argument that named it, for messages (``--mots-checkpoint``).

    Raises:
        HVPSError: one line naming the option and the file: missing or unreadable, a checkpoint
            of the other task, without a saved network configuration, or weights that do not
            fit the network.
    """
    path = Path(path)
    ckpt = load_checkpoint_dict(path, option)
    where = f"{option} {path}"
    hparams = ckpt.get("hyper_parameters")
    found = checkpoint_role(ckpt)
    if found is None:
        raise HVPSError(f"{where}: not a checkpoint of this project's MOTSModule or SemanticModule")
    if found != role:
        raise HVPSError(
            f"{where}: a {TASK_CLASSES[found]} checkpoint, expected a {TASK_CLASSES[role]} checkpoint "
            f"(the {role} network)"
        )
    assert isinstance(hparams, Mapping)
    net_config = hparams.get("net")
    if not isinstance(net_config, Mapping) or "init_args" not in net_config:
        raise HVPSError(
            f"{where}: a checkpoint from before the network was nested in the model config (no 'net' "
            "hyperparameter), so the network cannot be rebuilt from it"
        )
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise HVPSError(f"{where}: holds no state_dict")
    net_state = {
        k[len("net.") :]: v for k, v in state.items() if k.startswith("net.") and isinstance(v, Tensor)
    }
    net = build_network(role, str(net_config.get("class_path", "")), net_config["init_args"], where)
    load_network_state(net, net_state, role, where)
    data = ckpt.get("datamodule_hyper_parameters") or {}
    image_size = data.get("image_size")
    settings: dict[str, Any] = {"image_size": None if image_size is None else [int(v) for v in image_size]}
    if role == "mots":
        assert isinstance(net, MOTSNet)
        settings["mask_threshold"] = float(hparams.get("mask_threshold", 0.5))
        centred = data.get("clip_mode") == "centred"
        settings["target_index"] = net.num_frames // 2 if centred else net.num_frames - 1
    stages = _stages(ckpt, path)
    source = {
        "checkpoint": str(path),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "lightning_version": ckpt.get("pytorch-lightning_version"),
        "metrics": stages[0]["metrics"],
        "stages": stages,
    }
    return TrainedNetwork(role, net.eval(), str(hparams.get("dataset", "")), settings, source)
