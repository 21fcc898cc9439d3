"""The MOTS task's one start-weights loader: torchvision COCO (v1 and v2 layouts), ImageNet, files."""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import WeightSource
from hvps_lightning.models.mots import MOTSNet
from hvps_lightning.models.mots.lightning_model import MOTSModule
from hvps_lightning.models.mots.weights import coco_categories
from hvps_lightning.models.state import fresh_modules

#: what torchvision's Mask R-CNN does not have: the only modules a COCO start leaves fresh
NEW_MODULES = ["roi_heads.spatial_attention", "roi_heads.embedding_head", "temporal_attention"]


def _offline(*args: Any, **kwargs: Any) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("option", ["imagenet", "coco"])
def test_building_downloads_nothing_and_the_loader_says_it_needs_internet(
    make_module: Callable, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    kwargs = {"backbone": "resnet50", "fpn_channels": 256} if option == "coco" else {}
    model = make_module(pretrained=option, **kwargs)  # builds offline: nothing is fetched yet
    assert model.hparams.pretrained == option
    with pytest.raises(HVPSError) as info:
        model.setup("fit")
    message = str(info.value)
    assert "\n" not in message
    assert f"pretrained='{option}' needs internet" in message and "init_checkpoint" in message


def test_coco_needs_a_resnet50_with_256_fpn_channels(make_module: Callable) -> None:
    with pytest.raises(HVPSError, match="resnet50 with 256 FPN channels"):
        make_module(pretrained="coco")


def test_init_checkpoint_round_trip(make_net: Callable, make_module: Callable, tmp_path: Path) -> None:
    source = make_net(seed=1)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    model = make_module(seed=2, init_checkpoint=str(path))
    # a start checkpoint freezes the BatchNorms (as torchvision does with pretrained weights)
    assert type(model.net.backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    assert model.load_start_weights() == []
    for key, value in model.net.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])
    with pytest.raises(HVPSError, match=r"init_checkpoint .*missing\.pt: file not found"):
        make_module(init_checkpoint=str(tmp_path / "missing.pt")).load_start_weights()
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(HVPSError, match="not a loadable checkpoint"):
        make_module(init_checkpoint=str(tmp_path / "bad.pt")).load_start_weights()


def test_coco_rows_are_mapped_by_class_name(make_module: Callable) -> None:
    model = make_module(dataset="kitti_step")  # things: person (label 1), car (label 2)
    width = model.net.init_args["box_representation_size"]
    rows = torch.arange(91, dtype=torch.float32)
    coco = {
        "roi_heads.box_predictor.cls_score.weight": rows[:, None].expand(91, width).clone(),
        "roi_heads.box_predictor.cls_score.bias": rows.clone(),
        "roi_heads.box_predictor.bbox_pred.bias": rows.repeat_interleave(4),
        # the published COCO v1 file still uses torchvision's old key names
        "rpn.head.conv.bias": torch.full((32,), 5.0),
        "roi_heads.mask_head.mask_fcn2.bias": torch.full((32,), 6.0),
    }
    result = model.transfer_state(coco, WeightSource("test", class_names=coco_categories()))
    net = model.net
    assert net.rpn.head.conv[0][0].bias.tolist() == [5.0] * 32
    assert net.roi_heads.mask_head[1][0].bias.tolist() == [6.0] * 32
    assert net.roi_heads.box_predictor.cls_score.bias.tolist() == [0.0, 1.0, 3.0]  # bg, COCO person, car
    assert net.roi_heads.box_predictor.bbox_pred.bias.tolist() == [0.0] * 4 + [1.0] * 4 + [3.0] * 4
    assert "roi_heads.box_predictor.cls_score.bias" not in result.fresh
    assert "backbone.body.conv1.weight" in result.fresh
    assert result.unused == []


def _legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's v1 COCO file as published (before its versioned key renames)."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("rpn.head.conv.0.0."):
            key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        elif key.startswith("roi_heads.mask_head.") and ".0." in key:
            index = int(key.split(".")[2])
            key = f"roi_heads.mask_head.mask_fcn{index + 1}.{key.split('.')[-1]}"
        renamed[key] = value
    return renamed


@pytest.mark.parametrize("detector", ["v1", "v2"])
def test_torchvision_coco_layout_loads_every_detector_key(detector: str, tmp_path: Path) -> None:
    """A randomly initialised torchvision Mask R-CNN (no download) saved to a file, as init_checkpoint."""
    torch.manual_seed(0)
    build = maskrcnn_resnet50_fpn_v2 if detector == "v2" else maskrcnn_resnet50_fpn
    coco_like = build(weights=None, weights_backbone=None, num_classes=91).state_dict()
    path = tmp_path / f"maskrcnn_{detector}.pth"
    torch.save(_legacy_names(coco_like) if detector == "v1" else coco_like, path)
    model = MOTSModule(net=MOTSNet(thing_ids=(11, 13), detector=detector), dataset="kitti_step",
                       init_checkpoint=str(path))  # fmt: skip
    state, source = model.checkpoint_state(str(path))
    assert source.class_names == coco_categories()  # a 91-row classifier: COCO, rows by name
    result = model.transfer_state(state, source)
    assert result.unused == []  # every detector key of torchvision's model is used
    assert fresh_modules(model.net, result.fresh) == NEW_MODULES  # only TA, SA and the embedding head
    person, car = 1, 3  # COCO rows
    for name in ("box_predictor.cls_score", "mask_predictor.mask_fcn_logits"):
        ours = model.net.roi_heads.get_submodule(name).weight
        theirs = coco_like[f"roi_heads.{name}.weight"]
        torch.testing.assert_close(ours[1:], theirs[[person, car]])
    torch.testing.assert_close(
        model.net.backbone.fpn.layer_blocks[0][0].weight, coco_like["backbone.fpn.layer_blocks.0.0.weight"]
    )
    # the other layout is refused with a line that says what to set
    other = "v1" if detector == "v2" else "v2"
    wrong = MOTSModule(net=MOTSNet(thing_ids=(11, 13), detector=other), dataset="kitti_step")
    with pytest.raises(HVPSError, match=f"a Mask R-CNN {detector} state dict.*detector {detector}$"):
        wrong.transfer_state(state, source)
