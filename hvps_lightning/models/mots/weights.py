"""Start weights of the MOTS network: ImageNet, torchvision's COCO Mask R-CNN, local files, stages.

Every path ends in :func:`load_with_class_rows`: parameters whose shape matches are copied,
the class-specific rows of the box classifier, box regression and mask predictor are
copied row by row through a map from our detector labels to the source's, and everything
else stays as initialised (returned as "fresh" keys).

The downloads need internet; offline they raise a one-line :class:`HVPSError` that says
so and points to ``init_checkpoint`` (a local file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from hvps_lightning.errors import HVPSError

#: parameter name suffix -> rows per class (the box regression has 4 rows per class)
CLASS_SPECIFIC: dict[str, int] = {
    "roi_heads.box_predictor.cls_score.weight": 1,
    "roi_heads.box_predictor.cls_score.bias": 1,
    "roi_heads.box_predictor.bbox_pred.weight": 4,
    "roi_heads.box_predictor.bbox_pred.bias": 4,
    "roi_heads.mask_predictor.mask_fcn_logits.weight": 1,
    "roi_heads.mask_predictor.mask_fcn_logits.bias": 1,
}

#: class names of our specs that COCO spells differently
COCO_ALIASES: dict[str, str] = {"pedestrian": "person"}

#: prefixes under which our LightningModules (and common wrappers) store the network
_PREFIXES = ("net.", "model.", "module.")


def download_state_dict(weights: object, option: str) -> dict[str, Tensor]:
    """Return the state dict of a torchvision ``Weights`` entry, downloading it if not cached.

    Raises:
        HVPSError: if it cannot be fetched (no internet, blocked, corrupt download).
    """
    try:
        return weights.get_state_dict(progress=False, check_hash=False)  # type: ignore[attr-defined]
    except (OSError, RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HVPSError(
            f"{option} needs internet to download {weights} ({reason}); "
            "download the file elsewhere and pass init_checkpoint=PATH instead"
        ) from None


def read_state_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a plain ``torch.save`` file or a Lightning checkpoint (no pickled code).

    Raises:
        HVPSError: if the file is missing, unreadable or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise HVPSError(f"init_checkpoint {path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise HVPSError(f"init_checkpoint {path}: not a loadable state dict ({type(exc).__name__})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise HVPSError(f"init_checkpoint {path}: holds no state dict of tensors")
    return strip_prefix({k: v for k, v in obj.items() if isinstance(v, Tensor)})


def upgrade_legacy_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename keys of torchvision's older Mask R-CNN files (the published COCO weights) to today's.

    torchvision renames them in versioned ``_load_from_state_dict`` hooks, which a key-by-key
    copy bypasses: ``rpn.head.conv.*`` became ``rpn.head.conv.0.0.*`` and
    ``roi_heads.mask_head.mask_fcn<i>.*`` became ``roi_heads.mask_head.<i - 1>.0.*``.
    """
    upgraded = {}
    for key, value in state.items():
        match = re.fullmatch(r"roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)", key)
        if match:
            key = f"roi_heads.mask_head.{int(match.group(1)) - 1}.0.{match.group(2)}"
        elif key in ("rpn.head.conv.weight", "rpn.head.conv.bias"):
            key = key.replace("rpn.head.conv.", "rpn.head.conv.0.0.")
        upgraded[key] = value
    return upgraded


def strip_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a wrapper prefix (``net.``, ``model.``, ``module.``) shared by the detector keys."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "roi_heads.") or k.startswith(prefix + "backbone.") for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def class_rows_by_name(target_names: Sequence[str], source_names: Sequence[str]) -> dict[int, int | None]:
    """Map detector labels (0 = background, i = target_names[i - 1]) to source labels by class name."""
    index = {name: i for i, name in enumerate(source_names)}
    rows: dict[int, int | None] = {0: 0}
    for label, name in enumerate(target_names, start=1):
        rows[label] = index.get(name, index.get(COCO_ALIASES.get(name, name)))
    return rows


def load_with_class_rows(
    module: nn.Module,
    state: Mapping[str, Tensor],
    class_rows: Mapping[int, int | None] | None,
    skip_prefixes: Sequence[str] = (),
) -> list[str]:
    """Copy ``state`` into ``module``; class-specific rows go through ``class_rows``.

    Args:
        module: the network (keys as in :class:`~hvps_lightning.models.mots.MOTSNet`).
        state: source state dict (same key names; a wrapper prefix already stripped).
        class_rows: our detector label -> the source's (None: no source row, stays new).
            None: copy class-specific tensors only where their shapes match.
        skip_prefixes: keys starting with these stay new (e.g. the identity classifier of
            another dataset).

    Returns:
        The keys of ``module`` left (entirely or partly) at their initial values.
    """
    own = module.state_dict()
    loaded: dict[str, Tensor] = {}
    fresh: list[str] = []
    for key, value in own.items():
        source = state.get(key)
        if any(key.startswith(p) for p in skip_prefixes) or source is None:
            if not key.endswith("num_batches_tracked"):
                fresh.append(key)
            continue
        if key in CLASS_SPECIFIC and class_rows is not None:
            per_class = CLASS_SPECIFIC[key]
            merged = value.clone()
            complete = source.shape[1:] == value.shape[1:]
            if complete:
                for ours, theirs in class_rows.items():
                    if theirs is None or (theirs + 1) * per_class > source.shape[0]:
                        complete = False
                        continue
                    merged[ours * per_class : (ours + 1) * per_class] = source[
                        theirs * per_class : (theirs + 1) * per_class
                    ]
                loaded[key] = merged
            if not complete:
                fresh.append(key)
        elif source.shape == value.shape:
            loaded[key] = source
        else:
            fresh.append(key)
    module.load_state_dict(loaded, strict=False)
    return fresh
