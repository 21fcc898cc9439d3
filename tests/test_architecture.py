"""The package's import rules: shared types at the bottom, glue at the top, no arrow pointing up.

Every ``import hvps_lightning.<x>`` in the package, at module level or inside a function, is an
arrow from the importing folder to ``<x>``. The folders are ranked bottom to top (docs/ARCHITECTURE.md);
an arrow may point down or stay inside its folder, never up and never sideways between two
folders of one rank.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hvps_lightning"

#: bottom to top; a folder may import only folders of a lower rank (and itself)
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("io", "wandb_io"),
    ("structures",),
    ("formats", "viz"),
    ("data",),
    ("models",),
    ("tracking",),
    ("panoptic",),
    ("metrics",),
    ("evaluation",),
    ("inference", "sweeps"),
    ("lightning",),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: stricter rules than the ranks alone
ONLY = {
    # the networks know tensors and the shared types, nothing of tracking, metrics or files
    "models": {"errors", "io", "structures", "models"},
    # the tracker is numpy/scipy over the shared types
    "tracking": {"errors", "io", "structures", "tracking"},
}


def _folder(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "hvps_lightning" or len(parts) < 2:
        return None
    return parts[1]


def _arrows() -> list[tuple[str, str, str]]:
    """(importing file, importing folder, imported folder) for every internal import."""
    arrows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem
        if source == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                target = _folder(name)
                if target is not None and target != source:
                    arrows.append((str(relative), source, target))
    return arrows


def test_every_folder_has_a_rank() -> None:
    folders = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    folders = {f for f in folders if not f.startswith("_") and f not in ("configs", "py")}
    folders.discard("__pycache__")
    assert folders <= set(RANK), f"unranked: {sorted(folders - set(RANK))}"


def test_no_arrow_points_up_or_sideways() -> None:
    wrong = [
        f"{file}: {source} (rank {RANK[source]}) imports {target} (rank {RANK[target]})"
        for file, source, target in _arrows()
        if RANK[target] >= RANK[source]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("folder", sorted(ONLY))
def test_stricter_rules(folder: str) -> None:
    wrong = [
        f"{file} imports {target}"
        for file, source, target in _arrows()
        if source == folder and target not in ONLY[folder]
    ]
    assert not wrong, "\n".join(wrong)


#: the lazy exports: ``hvps_lightning.metrics.STQ`` is the public metric API (docs/ARCHITECTURE.md) and
#: needs torchmetrics, while ``hvps evaluate step`` imports the STQ core from the same package;
#: ``hvps_lightning.Pipeline`` (the package root's one attribute, the five-line inference API)
#: loads torch and the networks, while ``import hvps_lightning`` (every ``hvps`` command) must not
ALLOWED_HOOKS = {"metrics/__init__.py", "__init__.py"}


def test_no_lazy_import_hooks() -> None:
    # a fast `--help` comes from the layering, not from module-level __getattr__ tricks
    hooks = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(PACKAGE)) not in ALLOWED_HOOKS
        and any(
            isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    ]
    assert not hooks, f"module-level __getattr__ in {hooks}"


def test_inference_needs_no_lightning() -> None:
    # a bundle runs where only torch is installed: nothing under inference/ imports Lightning
    wrong = []
    for path in sorted((PACKAGE / "inference").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            lightning = [n for n in names if n.split(".")[0] in ("lightning", "pytorch_lightning")]
            wrong += [f"{path.name} imports {n}" for n in lightning]
    assert not wrong, "\n".join(wrong)
