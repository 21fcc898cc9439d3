"""``hvps config list|show``, and the resolution of ``--config`` arguments for every command.

The YAML configs ship inside the package (``hvps_lightning/configs/``), so ``--config
stages/mot_step/mots`` works from an installed wheel as from a checkout (a path that exists
always wins). A config may build on others with a top-level ``base:`` (a name or a list of
names, shipped or relative to the file): :func:`expand_config_args` puts every base's
``--config`` before the file's own, recursively, so a stage file holds only what differs from
``base/mots`` and list keys can be extended with ``key+:`` (jsonargparse's list append).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.errors import file_error
from hvps_lightning.io import CONFIGS_DIR, read_text_file, resolve_config, shipped_configs


def expand_config_args(argv: Sequence[str]) -> list[str]:
    """Replace every ``--config X`` by the resolved files of ``X``'s bases and ``X`` itself.

    Raises:
        HVPSError: naming the ``--config`` value or file when it is missing, not YAML, or its
            ``base:`` chain is broken or circular.
    """
    out: list[str] = []
    seen: set[Path] = set()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("--config", "-c") and index + 1 < len(argv):
            value, index = argv[index + 1], index + 2
        elif arg.startswith("--config="):
            value, index = arg.split("=", 1)[1], index + 1
        else:
            out.append(arg)
            index += 1
            continue
        for path in _with_bases(resolve_config(value), seen, ()):
            out += ["--config", str(path)]
    return out


def read_config(path: Path) -> dict:
    """The parsed YAML of a config file (``{}`` for an empty one).

    Raises:
        HVPSError: naming the file if it is unreadable, not YAML, or not a mapping.
    """
    text = read_text_file(path, missing="config not found", unreadable="unreadable config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise file_error(path, f"not valid YAML ({where}{problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise file_error(path, f"a config is a mapping of keys, got a {type(data).__name__}")
    return data


def _bases(path: Path, data: dict) -> list[Path]:
    names = data.get("base") or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise file_error(path, "base: expected a config name or a list of names")
    found = []
    for name in names:
        local = path.parent / (name if name.endswith(".yaml") else f"{name}.yaml")
        found.append(local if local.is_file() else resolve_config(name, f"{path}: base"))
    return found


def _with_bases(path: Path, seen: set[Path], chain: tuple[Path, ...]) -> list[Path]:
    path = path.resolve()
    if path in chain:
        raise file_error(path, "its base: configs lead back to it (a cycle)")
    files: list[Path] = []
    for base in _bases(path, read_config(path)):
        files += _with_bases(base, seen, (*chain, path))
    if path not in seen:
        seen.add(path)
        files.append(path)
    return files


def composed_config(*names: str | Path) -> dict:
    """The configs ``names`` (and their bases) merged as jsonargparse merges them, without the ``base`` key.

    Mappings merge key by key, a later value replaces an earlier one, and ``key+: [...]`` appends
    to the list ``key``. For reading a config's values (benchmarks, plans); training parses the
    files with LightningCLI itself.
    """
    seen: set[Path] = set()
    files = [f for name in names for f in _with_bases(resolve_config(name), seen, ())]
    merged: dict = {}
    for path in files:
        data = dict(read_config(path))
        data.pop("base", None)
        _merge(merged, data)
    return merged


def _merge(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(key, str) and key.endswith("+"):
            base = key[:-1]
            existing = target.get(base) or []
            target[base] = [*existing, *(value if isinstance(value, list) else [value])]
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _summary(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def build_parser() -> ArgumentParser:
    """The ``hvps config`` argument parser."""
    parser = ArgumentParser(prog="hvps config", description="The YAML configs shipped with hvps-lightning.")
    commands = parser.add_subcommands(dest="action")
    listing = ArgumentParser(description="list the shipped configs (name and first comment line)")
    commands.add_subcommand("list", listing, help="list the shipped configs")
    show = ArgumentParser(description="print a config and the base configs it builds on")
    show.add_argument("name", type=str, help="a shipped config name (e.g. stages/mot_step/mots) or a path")
    commands.add_subcommand("show", show, help="print a config and its bases")
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps config list|show``."""
    if cfg.action == "list":
        names = shipped_configs()
        width = max(len(n) for n in names)
        for name in names:
            print(f"{name:<{width}}  {_summary(CONFIGS_DIR / f'{name}.yaml')}")
        return 0
    files = _with_bases(resolve_config(cfg.show.name, "hvps config show"), set(), ())
    for path in files:
        shown = path.relative_to(CONFIGS_DIR) if path.is_relative_to(CONFIGS_DIR) else path
        print(f"# ---- {shown}")
        print(path.read_text(encoding="utf-8").rstrip())
    if len(files) > 1:
        print(f"# (hvps loads these {len(files)} files in this order; later keys override earlier ones)")
    return 0


def config_names(argv: Sequence[str]) -> list[str]:
    """The ``--config`` values of ``argv`` as given (for messages)."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]


__all__ = ["build_parser", "composed_config", "config_names", "expand_config_args", "read_config", "run"]
