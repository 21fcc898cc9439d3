"""Small file helpers shared by writers and readers.

Writers' files appear whole or not at all; readers fail with one-line
:class:`~hvps_lightning.errors.HVPSError` messages that name the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hvps_lightning.errors import HVPSError, file_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the suffix of ``path`` so that writers that pick a format by
    extension (PIL, imageio, numpy) still work. On error the temporary file is removed and
    an existing ``path`` is left untouched.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> out.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; rename it onto ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (strict JSON: NaN as ``null``, infinity as ``"inf"``)."""

    def _clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, float) and value in (math.inf, -math.inf):
            return "inf" if value > 0 else "-inf"
        if isinstance(value, dict):
            return {str(k): _clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_clean(v) for v in value]
        return value

    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(_clean(obj), handle, indent=indent, allow_nan=False)
        handle.write("\n")


def read_text_file(path: Path, *, missing: str, unreadable: str, encoding: str = "utf-8") -> str:
    """Return the text of ``path``.

    Raises:
        HVPSError: ``<path>: <missing>`` if the file does not exist, ``<path>: <unreadable>
            (<reason>)`` if it cannot be read or decoded.
    """
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise file_error(path, missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"{unreadable} ({exc})") from None


def read_json_file(path: Path, *, missing: str, unreadable: str) -> Any:
    """Return the parsed JSON of ``path``; errors as :func:`read_text_file`, invalid JSON as unreadable."""
    text = read_text_file(path, missing=missing, unreadable=unreadable)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise file_error(path, f"{unreadable} ({exc})") from None


#: the YAML configs shipped inside the package (stages/, paper/, demo/, tracker/, ...)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the shipped configs (``stages/mot_step/mots``, ...), sorted."""
    return sorted(p.relative_to(CONFIGS_DIR).with_suffix("").as_posix() for p in CONFIGS_DIR.rglob("*.yaml"))


def resolve_config(value: str | Path, option: str = "--config") -> Path:
    """The file a config argument names: an existing path, else a shipped config by name.

    ``stages/mot_step/mots`` (with or without ``.yaml``) names
    ``hvps_lightning/configs/stages/mot_step/mots.yaml``, so the configs work from an installed
    wheel as from a checkout; a path that exists always wins.

    Raises:
        HVPSError: ``<option> <value>: ...`` (``<value>: ...`` without an option) if it is neither
            a file nor a shipped config.

    Example:
        >>> resolve_config("tracker/default").relative_to(CONFIGS_DIR).as_posix()
        'tracker/default.yaml'
    """
    path = Path(value)
    if path.is_file():
        return path
    name = str(value).removesuffix(".yaml")
    shipped = CONFIGS_DIR / f"{name}.yaml"
    if not path.is_absolute() and ".." not in Path(name).parts and shipped.is_file():
        return shipped
    where = f"{option} {value}" if option else str(value)
    if path.exists():
        raise HVPSError(f"{where}: not a file")
    raise HVPSError(f"{where}: no such file, and no shipped config of that name (hvps config list)")


#: a name read from a file that becomes part of a path: no separator, no "..", not hidden
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def plain_name(name: Any, what: str) -> str:
    """Return ``name`` if it is a plain file or folder name, else raise.

    Sequence and frame names read from caches, manifests and submissions decide where outputs
    are written; a name with a separator, ``..`` or a leading dot could write outside ``--out``.

    Raises:
        HVPSError: ``<what> <name!r> is not a plain name (...)``.

    Example:
        >>> plain_name("000001", "frame")
        '000001'
    """
    text = str(name)
    if not _PLAIN_NAME.match(text) or ".." in text:
        raise HVPSError(f"{what} {text!r} is not a plain name (letters, digits, _ . -; no separator or '..')")
    return text


def check_output_folder(path: str | Path, overwrite: bool, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` can become a command's output folder.

    Raises:
        HVPSError: ``<option> <path>: ...`` if it is a file, a non-empty folder without
            ``overwrite``, or its parent cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HVPSError(f"{option} {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise HVPSError(f"{option} {path}: folder exists and is not empty; pass --overwrite to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise HVPSError(f"{option} {path}: cannot write in {parent}")
    return path


def _remove_abandoned(path: Path) -> None:
    """Remove the partial folders of earlier runs into ``path`` whose process is gone (killed)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.partial-(\d+)-")
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and sibling.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(sibling, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with id ``pid`` exists (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def output_folder(path: str | Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a hidden sibling folder to write into; it becomes ``path`` only when the block succeeds.

    A command's output folder is all or nothing: on an error, Ctrl-C or a kill it is absent (or
    still the previous run's, untouched), never a mix of two runs. With ``overwrite`` an existing
    folder is replaced whole, and removed only once the new one is in place. A SIGKILL leaves
    the hidden ``.<name>.partial-<pid>-*`` folder behind; the next run into ``path`` removes it.

    Raises:
        HVPSError: as :func:`check_output_folder`.
    """
    path = check_output_folder(path, overwrite, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent))
    os.chmod(partial, 0o777 & ~_umask())
    try:
        yield partial
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(partial, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def last_checkpoint(run_root: str | Path, option: str | None = None) -> Path:
    """The newest ``checkpoints/*/last*.ckpt`` of a training run folder (``hvps fit``'s ``default_root_dir``).

    Every ``hvps fit`` writes its checkpoints into a new ``checkpoints/<time>/`` folder of its
    run folder (``RunCheckpoint``), so a run folder stands for the last checkpoint of its
    newest run.

    Args:
        run_root: the run folder.
        option: the argument that named it, for messages (e.g. ``init_from``).

    Raises:
        HVPSError: if the folder or its checkpoints are missing.
    """
    run_root = Path(run_root)
    where = f"{option} {run_root}" if option else str(run_root)
    if not run_root.is_dir():
        raise HVPSError(f"{where}: no such run folder (train that stage first, or give a checkpoint file)")
    found = sorted(run_root.glob("checkpoints/*/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise HVPSError(f"{where}: the training run wrote no checkpoints/*/last.ckpt")
    return found[-1]
