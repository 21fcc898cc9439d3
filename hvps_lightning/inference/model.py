"""``InferenceModel``: both trained networks and what running them needs, from checkpoints or a bundle.

An :class:`InferenceModel` holds the MOTS network and the semantic network (plain
``nn.Module`` s, weights loaded), their inference settings, the dataset spec, the tracker
configuration and the fusion rule. :meth:`InferenceModel.from_checkpoints` reads two Lightning
checkpoints (:mod:`.checkpoints`); :meth:`InferenceModel.save` writes them as a bundle
(:mod:`hvps_lightning.formats.bundle`) and :meth:`InferenceModel.load` reads one back: same
networks, same weights, same settings, without Lightning, a checkpoint or a dataset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from hvps_lightning import __version__
from hvps_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats.bundle import read_bundle, spec_from_dict, spec_to_dict, write_bundle
from hvps_lightning.inference.checkpoints import build_network, load_network_state, read_checkpoint
from hvps_lightning.inference.model_card import model_card
from hvps_lightning.models.mots.net import MOTSNet
from hvps_lightning.models.mots.outputs import DEFAULT_MASK_THRESHOLD
from hvps_lightning.models.net_config import net_config
from hvps_lightning.models.semantic.torch_model import SemanticNet
from hvps_lightning.panoptic.fusion import DEFAULT_UNCOVERED, UNCOVERED_RULES
from hvps_lightning.structures.specs import DatasetSpec, get_spec
from hvps_lightning.tracking.config import TrackerConfig

Size = tuple[int, int]


def _size(value: Any, where: str) -> Size | None:
    if value is None:
        return None
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise HVPSError(f"{where}: image_size must be [height, width] or null, got {value!r}") from None
    if height < 1 or width < 1:
        raise HVPSError(f"{where}: image_size must be positive, got {value!r}")
    return height, width


@dataclass
class InferenceModel:
    """Everything :class:`~hvps_lightning.inference.Pipeline` runs (see the module docstring).

    Attributes:
        spec: the dataset spec both networks predict (classes, things, colours, label divisor).
        mots: the MOTS network, eval mode.
        semantic: the semantic network, eval mode.
        mask_threshold: mask probability above which a pixel belongs to a detection.
        target_index: index of the frame the MOTS network detects in its window (T - 1: causal;
            T // 2: a centred window, one frame later out).
        mots_image_size: (H, W) the MOTS network was trained at, ``None`` for native size.
        semantic_image_size: the same for the semantic network.
        tracker: the tracker configuration.
        fusion_rule: what thing pixels no track covers become (``crowd``, ``void``, ``stuff``).
        sources: per network, where it came from (checkpoint, stages, logged metrics).
        card: the model card (Markdown).
    """

    spec: DatasetSpec
    mots: MOTSNet
    semantic: SemanticNet
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    target_index: int | None = None
    mots_image_size: Size | None = None
    semantic_image_size: Size | None = None
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    fusion_rule: str = DEFAULT_UNCOVERED
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    card: str = ""

    def __post_init__(self) -> None:
        if self.fusion_rule not in UNCOVERED_RULES:
            raise HVPSError(f"fusion rule {self.fusion_rule!r}: expected one of {', '.join(UNCOVERED_RULES)}")
        if tuple(self.mots.thing_ids) != tuple(self.spec.thing_ids):
            raise HVPSError(
                f"the MOTS network detects classes {list(self.mots.thing_ids)}, the things of "
                f"{self.spec.name} are {list(self.spec.thing_ids)}"
            )
        if self.semantic.num_classes != self.spec.num_classes:
            raise HVPSError(
                f"the semantic network predicts {self.semantic.num_classes} classes, "
                f"{self.spec.name} has {self.spec.num_classes}"
            )
        if self.target_index is None:
            self.target_index = self.mots.num_frames - 1
        self.mots.eval()
        self.semantic.eval()
        if not self.card:
            self.card = model_card(self)

    # Construction -------------------------------------------------------------------------------
    @classmethod
    def from_checkpoints(
        cls,
        mots_checkpoint: str | Path,
        semantic_checkpoint: str | Path,
        tracker_config: str | Path | TrackerConfig | Mapping[str, Any] | None = None,
        fusion_rule: str = DEFAULT_UNCOVERED,
    ) -> InferenceModel:
        """Both networks from their Lightning checkpoints (``hvps fit``'s ``last.ckpt``).

        Args:
            mots_checkpoint: a ``MOTSModule`` checkpoint.
            semantic_checkpoint: a ``SemanticModule`` checkpoint of the same dataset.
            tracker_config: a tracker YAML, a :class:`TrackerConfig` or a dict (default: the defaults).
            fusion_rule: the fusion's rule for uncovered thing pixels.

        Raises:
            HVPSError: naming the file: a missing or unreadable checkpoint, one of the other
                task, or checkpoints of two different datasets.
        """
        mots = read_checkpoint(mots_checkpoint, "mots", "--mots-checkpoint")
        semantic = read_checkpoint(semantic_checkpoint, "semantic", "--semantic-checkpoint")
        if mots.dataset != semantic.dataset:
            raise HVPSError(
                f"--semantic-checkpoint {semantic_checkpoint}: predicts dataset {semantic.dataset!r}, "
                f"the MOTS checkpoint {mots_checkpoint} predicts {mots.dataset!r}"
            )
        assert isinstance(mots.net, MOTSNet) and isinstance(semantic.net, SemanticNet)
        return cls(
            spec=get_spec(mots.dataset),
            mots=mots.net,
            semantic=semantic.net,
            mask_threshold=mots.settings["mask_threshold"],
            target_index=mots.settings["target_index"],
            mots_image_size=_size(mots.settings["image_size"], str(mots_checkpoint)),
            semantic_image_size=_size(semantic.settings["image_size"], str(semantic_checkpoint)),
            tracker=as_tracker_config(tracker_config),
            fusion_rule=fusion_rule,
            sources={"mots": mots.source, "semantic": semantic.source},
        )

    @classmethod
    def load(cls, path: str | Path) -> InferenceModel:
        """Read a bundle written by :meth:`save` (``hvps bundle``).

        Raises:
            HVPSError: naming the file: missing, not a bundle, another format version, a part
                missing or damaged, or networks that the stored weights do not fit.
        """
        bundle = read_bundle(path)
        where = str(bundle.path)
        manifest = bundle.manifest
        for key in ("dataset", "tracker", "fusion", "input"):
            if not isinstance(manifest.get(key), dict):
                raise file_error(where, f"incomplete bundle: manifest.json has no {key!r}")
        normalization = manifest["input"].get("normalization", {})
        expected = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        if {k: normalization.get(k) for k in expected} != expected:
            raise file_error(
                where, f"the bundle normalises frames with {normalization}, this version with {expected}"
            )
        nets: dict[str, nn.Module] = {}
        for role in ("mots", "semantic"):
            entry = manifest["networks"][role]
            if not isinstance(entry.get("init_args"), dict):
                raise file_error(where, f"incomplete bundle: the {role} network has no init_args")
            nets[role] = build_network(role, str(entry.get("class_path", "")), entry["init_args"], where)
            load_network_state(nets[role], bundle.weights[role], role, where)
        mots_settings = manifest["networks"]["mots"].get("settings", {})
        semantic_settings = manifest["networks"]["semantic"].get("settings", {})
        assert isinstance(nets["mots"], MOTSNet) and isinstance(nets["semantic"], SemanticNet)
        return cls(
            spec=spec_from_dict(manifest["dataset"], where),
            mots=nets["mots"],
            semantic=nets["semantic"],
            mask_threshold=float(mots_settings.get("mask_threshold", DEFAULT_MASK_THRESHOLD)),
            target_index=mots_settings.get("target_index"),
            mots_image_size=_size(mots_settings.get("image_size"), where),
            semantic_image_size=_size(semantic_settings.get("image_size"), where),
            tracker=TrackerConfig.from_dict(manifest["tracker"], where=f"{where} (tracker)"),
            fusion_rule=str(manifest["fusion"].get("uncovered", DEFAULT_UNCOVERED)),
            sources={role: manifest["networks"][role].get("source", {}) for role in ("mots", "semantic")},
            card=bundle.model_card,
        )

    # Bundle -------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The bundle manifest of this model (everything but the weights and the card)."""
        networks = {}
        for role, net, settings in (
            ("mots", self.mots, {"mask_threshold": self.mask_threshold, "target_index": self.target_index,
                                 "image_size": _json_size(self.mots_image_size)}),
            ("semantic", self.semantic, {"image_size": _json_size(self.semantic_image_size)}),
        ):  # fmt: skip
            config = net_config(net)
            if config is None:  # pragma: no cover - both networks record their arguments
                raise HVPSError(f"the {role} network did not record its constructor arguments")
            networks[role] = {
                **_json(config),
                "settings": settings,
                "source": _json(self.sources.get(role, {})),
            }
        return {
            "written_by": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": spec_to_dict(self.spec),
            "input": {
                "color": "RGB",
                "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            },
            "networks": networks,
            "tracker": self.tracker.to_dict(),
            "fusion": {"uncovered": self.fusion_rule},
        }

    def save(self, path: str | Path, weight_format: str | None = None) -> Path:
        """Write the model as a bundle (atomically); return its path."""
        weights = {"mots": self.mots.state_dict(), "semantic": self.semantic.state_dict()}
        return write_bundle(path, self.manifest(), weights, self.card, weight_format)


def as_tracker_config(value: str | Path | TrackerConfig | Mapping[str, Any] | None) -> TrackerConfig:
    """A tracker configuration from a YAML path, a dict, a config, or ``None`` (the defaults)."""
    if value is None:
        return TrackerConfig()
    if isinstance(value, TrackerConfig):
        return value
    if isinstance(value, Mapping):
        return TrackerConfig.from_dict(dict(value))
    return TrackerConfig.from_yaml(value)


def _json_size(size: Size | None) -> list[int] | None:
    return None if size is None else [int(size[0]), int(size[1])]


def _json(value: Any) -> Any:
    """``value`` as JSON values (tuples become lists); refuses what JSON cannot hold."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise HVPSError(f"cannot store {value!r} in a bundle ({exc})") from None
