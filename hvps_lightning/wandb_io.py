"""Weights & Biases as a source and a sink of files: the run mode, artifact references, artifact logging.

Every layer that talks to W&B (the Lightning logger, the prediction writers, the sweeps, the
commands) uses these, so that modes are spelled one way and an artifact reference works
wherever a path does:

* **Modes** (``--wandb`` of every command, ``mode:`` of the logger): ``auto``, ``online``,
  ``offline``, ``disabled``. ``auto`` follows ``WANDB_MODE`` when it is set, else goes online
  when credentials are configured (``WANDB_API_KEY``, a ``~/.netrc`` entry for api.wandb.ai)
  or a W&B sweep agent started the process, else offline; nothing ever blocks on a login.
* **References**: ``wandb-artifact://[entity/]project/name:version`` (W&B's own artifact path
  after the scheme) is accepted wherever a checkpoint, a cache or a bundle path is
  (``init_from``, ``--ckpt_path``, ``hvps track --detections``, ``hvps sweep --detections``...).
  :func:`resolve_path` downloads it (W&B's public API; online only) into a local cache and
  returns the local path; the artifact is remembered, and the next run started in the process
  declares it as an input (:func:`use_resolved_artifacts`), which is W&B's lineage.
* **Logging**: :func:`log_path_artifact` logs a file or a folder as an artifact of a run
  (a checkpoint, a detection cache, a sweep's results); offline runs keep it for ``wandb sync``.

Errors (offline, no such artifact, another type, no network) are one-line
errors (:class:`~hvps_lightning.errors.HVPSError`) naming the reference.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hvps_lightning.errors import HVPSError

#: the spellings of ``--wandb`` / the logger's ``mode``
WANDB_MODES = ("auto", "online", "offline", "disabled")
WandbMode = Literal["auto", "online", "offline", "disabled"]
ResolvedMode = Literal["online", "offline", "disabled"]

#: the scheme of an artifact reference
ARTIFACT_SCHEME = "wandb-artifact://"
#: artifact types: a checkpoint, a cache (detections, semantic maps), a sweep's result files, a model bundle
ARTIFACT_TYPES = ("model", "dataset", "result", "bundle")

_REFERENCE = re.compile(r"^(?:[\w.-]+/)?[\w.-]+/[\w.-]+:[\w.-]+$")


def wandb_has_api_key() -> bool:
    """Return whether W&B credentials are configured (environment or ``~/.netrc``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_wandb_mode(mode: str = "auto", option: str = "--wandb") -> ResolvedMode:
    """Turn a mode of :data:`WANDB_MODES` into ``online``, ``offline`` or ``disabled``.

    Example:
        >>> resolve_wandb_mode("offline")
        'offline'

    Raises:
        HVPSError: naming ``option`` for a mode that is not one of :data:`WANDB_MODES`.
    """
    if mode not in WANDB_MODES:
        raise HVPSError(f"{option} {mode}: expected one of {', '.join(WANDB_MODES)}")
    if mode != "auto":
        return mode  # type: ignore[return-value]
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("disabled", "off"):
        return "disabled"
    if env in ("offline", "dryrun"):
        return "offline"
    if env in ("online", "run"):
        return "online"
    if wandb_has_api_key() or os.environ.get("WANDB_SWEEP_ID"):
        return "online"
    return "offline"


# --------------------------------------------------------------------------- references
@dataclass(frozen=True)
class ResolvedArtifact:
    """An artifact reference downloaded to a local path.

    Attributes:
        reference: the reference as given (``wandb-artifact://...``).
        path: the local file or folder that stands for it.
        artifact: W&B's artifact object (what a run declares as its input).
    """

    reference: str
    path: Path
    artifact: Any


#: artifacts resolved in this process and not yet declared as the input of a run
_PENDING: list[ResolvedArtifact] = []


def is_artifact_reference(value: Any) -> bool:
    """Whether ``value`` is a ``wandb-artifact://`` reference."""
    return isinstance(value, str) and value.startswith(ARTIFACT_SCHEME)


def artifact_name(reference: str, option: str = "") -> str:
    """The W&B artifact path of a reference (``entity/project/name:version``).

    Raises:
        HVPSError: for a reference without ``project/name:version``.
    """
    name = reference[len(ARTIFACT_SCHEME) :].strip("/")
    if not _REFERENCE.match(name):
        where = f"{option} " if option else ""
        raise HVPSError(
            f"{where}{reference}: expected {ARTIFACT_SCHEME}[entity/]project/name:version "
            "(e.g. wandb-artifact://me/hvps-lightning/model-1a2b3c:v3)"
        )
    return name


def artifact_cache_dir() -> Path:
    """Where downloaded artifacts are kept (``$HVPS_ARTIFACT_CACHE``, else ``~/.cache/hvps-lightning``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hvps-lightning" / "artifacts"
    return Path(os.environ.get("HVPS_ARTIFACT_CACHE", default))


def resolve_path(value: str, kind: str, option: str) -> str:
    """``value`` itself, or for a ``wandb-artifact://`` reference the local path it downloads to.

    Args:
        value: a local path or an artifact reference.
        kind: the artifact type expected (:data:`ARTIFACT_TYPES`): ``model`` resolves to the
            checkpoint file in it, ``bundle`` to the bundle file, ``dataset``/``result`` to the folder.
        option: the argument that named it, for messages.

    Raises:
        HVPSError: one line naming the reference when W&B is offline or disabled, the artifact
            does not exist or cannot be fetched, or it is of another type.
    """
    if not is_artifact_reference(value):
        return value
    return str(resolve_artifact(value, kind, option).path)


def resolve_artifact(reference: str, kind: str, option: str) -> ResolvedArtifact:
    """Download the artifact of ``reference`` (see :func:`resolve_path`) and remember it for lineage."""
    name = artifact_name(reference, option)
    mode = resolve_wandb_mode("auto")
    if mode != "online":
        raise HVPSError(
            f"{option} {reference}: W&B is {mode} here (no API key, or WANDB_MODE={mode}), so the artifact "
            "cannot be fetched; log in (`wandb login`) or pass the local path instead"
        )
    try:
        import wandb

        artifact = wandb.Api().artifact(name)
    except Exception as exc:  # wandb raises CommError/ValueError/requests errors alike
        raise HVPSError(f"{option} {reference}: W&B could not find or fetch it ({_reason(exc)})") from None
    if getattr(artifact, "type", kind) != kind:
        raise HVPSError(
            f"{option} {reference}: a {artifact.type!r} artifact, but {option} needs a {kind!r} artifact"
        )
    target = artifact_cache_dir() / name.replace(":", "-")
    try:
        folder = Path(artifact.download(root=str(target)))
    except Exception as exc:
        raise HVPSError(f"{option} {reference}: download failed ({_reason(exc)})") from None
    path = _entry_point(folder, kind, option, reference)
    resolved = ResolvedArtifact(reference, path, artifact)
    _PENDING.append(resolved)
    return resolved


def _entry_point(folder: Path, kind: str, option: str, reference: str) -> Path:
    """The file a ``model``/``bundle`` artifact stands for; the folder of the others."""
    if kind not in ("model", "bundle"):
        return folder
    suffix = ".ckpt" if kind == "model" else ".hvps"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    wanted = [p for p in files if p.suffix == suffix] or files
    if len(wanted) != 1:
        raise HVPSError(
            f"{option} {reference}: expected one {suffix} file in the artifact, found {len(wanted)} files"
        )
    return wanted[0]


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def use_resolved_artifacts(run: Any) -> list[str]:
    """Declare the artifacts resolved so far as inputs of ``run`` (W&B lineage); return their references.

    A run in offline or disabled mode cannot link remote artifacts; their references go into
    its config instead (``inputs``), so the provenance is still recorded.
    """
    pending, _PENDING[:] = list(_PENDING), []
    references = [r.reference for r in pending]
    if run is None or not pending:
        return references
    online = not getattr(getattr(run, "settings", None), "_offline", False)
    for resolved in pending:
        if online:
            try:
                run.use_artifact(resolved.artifact)
            except Exception:  # lineage is a record, not a reason to stop the run
                online = False
    run.config.update({"inputs": references}, allow_val_change=True)
    return references


# --------------------------------------------------------------------------- logging
def log_path_artifact(
    run: Any,
    path: str | Path,
    name: str,
    kind: str,
    metadata: dict[str, Any] | None = None,
    aliases: list[str] | None = None,
) -> Any:
    """Log a file or folder as an artifact of ``run`` (``None``: nothing); return the artifact.

    Offline runs keep the artifact with the run for ``wandb sync``. The artifact's name is
    made of the characters W&B allows.

    Raises:
        HVPSError: if ``kind`` is not one of :data:`ARTIFACT_TYPES` or the path does not exist.
    """
    if run is None:
        return None
    if kind not in ARTIFACT_TYPES:
        raise HVPSError(f"artifact type {kind!r}: expected one of {', '.join(ARTIFACT_TYPES)}")
    import wandb

    path = Path(path)
    artifact = wandb.Artifact(safe_artifact_name(name), type=kind, metadata=dict(metadata or {}))
    if path.is_dir():
        artifact.add_dir(str(path))
    elif path.is_file():
        artifact.add_file(str(path))
    else:
        raise HVPSError(f"{path}: nothing to log as a W&B artifact (not found)")
    return run.log_artifact(artifact, aliases=aliases)


def safe_artifact_name(name: str) -> str:
    """``name`` with every character W&B refuses in artifact names replaced by ``-``.

    Example:
        >>> safe_artifact_name("detections 0002/val")
        'detections-0002-val'
    """
    return re.sub(r"[^\w.-]+", "-", name).strip("-")[:128] or "artifact"
