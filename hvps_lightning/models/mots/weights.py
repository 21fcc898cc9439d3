"""Start weights of the MOTS network: ImageNet, torchvision's COCO Mask R-CNN (v1 and v2), files.

Every path ends in :func:`load_with_class_rows`: parameters whose shape matches are copied,
the class-specific rows of the box classifier, box regression and mask predictor are
copied row by row through a map from our detector labels to the source's, and everything
else stays as initialised (reported as "fresh" keys; source keys nothing took are reported
as "unused").

The downloads need internet; offline they raise a one-line :class:`HVPSError` that says
so and points to ``init_checkpoint`` (a local file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torchvision
from torch import Tensor, nn

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.state import LoadResult

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


def coco_weights(detector: str) -> torchvision.models.WeightsEnum:
    """Torchvision's COCO weights of the Mask R-CNN architecture ``detector`` (``v1`` or ``v2``)."""
    detection = torchvision.models.detection
    if detector == "v2":
        return detection.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
    return detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1


def coco_categories() -> tuple[str, ...]:
    """The 91 class names (index = row of the COCO classifier) of torchvision's COCO detectors."""
    return tuple(coco_weights("v1").meta["categories"])


def download_state_dict(weights: torchvision.models.WeightsEnum, option: str) -> dict[str, Tensor]:
    """Return the state dict of a torchvision ``Weights`` entry, downloading it if not cached.

    Raises:
        HVPSError: if it cannot be fetched (no internet, blocked, corrupt download).
    """
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HVPSError(
            f"{option} needs internet to download {weights} ({reason}); "
            "download the file elsewhere and pass init_checkpoint=PATH instead"
        ) from None


def imagenet_state(backbone: str) -> dict[str, Tensor]:
    """Torchvision's ImageNet weights of ``backbone`` under our keys (``backbone.body.*``); downloads."""
    weights = torchvision.models.get_model_weights(backbone)["IMAGENET1K_V1"]
    state = download_state_dict(weights, "pretrained='imagenet'")
    return {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def upgrade_legacy_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename keys of torchvision's older Mask R-CNN files (the published COCO v1 weights) to today's.

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


def detector_layout(state: Mapping[str, Tensor]) -> str | None:
    """``v1`` or ``v2`` for a state dict of torchvision's Mask R-CNN layouts (or MOTSNet's), else None.

    v2 has BatchNorm in its FPN (``backbone.fpn.inner_blocks.<i>.1.*``) and a convolutional box
    head (``roi_heads.box_head.0.0.weight``); v1 has FC layers ``fc6``/``fc7``.
    """
    if "roi_heads.box_head.0.0.weight" in state or "backbone.fpn.inner_blocks.0.1.weight" in state:
        return "v2"
    if "roi_heads.box_head.fc6.weight" in state or "backbone.fpn.inner_blocks.0.0.bias" in state:
        return "v1"
    return None


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
) -> LoadResult:
    """Copy ``state`` into ``module``; class-specific rows go through ``class_rows``.

    Args:
        module: the network (keys as in :class:`~hvps_lightning.models.mots.MOTSNet`).
        state: source state dict (same key names; a wrapper prefix already stripped).
        class_rows: our detector label -> the source's (None: no source row, stays new).
            None: copy class-specific tensors only where their shapes match.
        skip_prefixes: keys starting with these stay new (e.g. the identity classifier of
            another dataset).

    Returns:
        The keys left fresh and the source keys left unused (BatchNorm counters not counted).
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
    unused = sorted(k for k in state if k not in loaded and not k.endswith("num_batches_tracked"))
    return LoadResult(fresh, unused)
