"""Fixtures of the semantic model tests: a SemanticModule around a SemanticNet for a dataset's classes."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from hvps_lightning.models.semantic import SemanticNet
from hvps_lightning.models.semantic.lightning_model import SemanticModule
from hvps_lightning.structures.specs import get_spec


def build_module(dataset: str = "motchallenge_step", **kwargs: Any) -> SemanticModule:
    """A SemanticModule for ``dataset``; ``kwargs`` go to whichever of net and task takes them."""
    net_args = set(inspect.signature(SemanticNet).parameters)
    net_kwargs = {k: v for k, v in kwargs.items() if k in net_args}
    task_kwargs = {k: v for k, v in kwargs.items() if k not in net_args}
    net = SemanticNet(num_classes=get_spec(dataset).num_classes, **net_kwargs)
    return SemanticModule(net=net, dataset=dataset, **task_kwargs)


@pytest.fixture
def make_module() -> Callable[..., SemanticModule]:
    """Factory: ``make_module(dataset="motchallenge_step", **net_and_task_args)`` -> a SemanticModule."""
    return build_module
