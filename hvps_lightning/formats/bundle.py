"""The model bundle: one file holding everything ``hvps infer`` needs, and nothing that runs code.

A bundle (``model.hvps``, written by ``hvps bundle``) is a zip archive::

    manifest.json          format and version, the dataset spec, per network its class and
                           constructor arguments, inference settings and weights file, the
                           tracker configuration, the fusion rule, where the weights came from
    mots.safetensors       the MOTS network's state dict
    semantic.safetensors   the semantic network's state dict
    model_card.md          training stages, data and logged metrics, in words

Weights are safetensors (``safetensors`` installed) or ``torch.save`` state dicts
(``mots.pt``), read back with ``torch.load(weights_only=True)``; the manifest names the file
and its format. Neither holds pickled code, so opening a bundle runs nothing but tensor
parsing: no Lightning checkpoint, no dataset, no class named by the file but the networks'
own (which :mod:`hvps_lightning.inference.bundle` allows by name).

A zip rather than a directory: one file to copy, upload or attach, whose members carry
CRCs (a damaged bundle fails to read instead of loading garbage). Weights are stored
uncompressed (float tensors barely compress); text is deflated.

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.hvps"
    >>> manifest = {"networks": {"mots": {}, "semantic": {}}}
    >>> weights = {"mots": {"w": torch.ones(2)}, "semantic": {"w": torch.zeros(1)}}
    >>> _ = write_bundle(path, manifest, weights, "# card")
    >>> read_bundle(path).weights["mots"]["w"].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hvps_lightning.errors import file_error
from hvps_lightning.io import atomic_path
from hvps_lightning.structures.specs import SPECS, DatasetSpec

#: what ``manifest["format"]`` says of every bundle
BUNDLE_FORMAT = "hvps-model-bundle"
#: the manifest layout this code writes and reads; a change that old readers would misread bumps it
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
MODEL_CARD = "model_card.md"
#: the networks every bundle holds
NETWORKS: tuple[str, ...] = ("mots", "semantic")
WEIGHT_FORMATS = {"safetensors": ".safetensors", "torch": ".pt"}


@dataclass
class Bundle:
    """A bundle's contents, as :func:`read_bundle` returns them.

    Attributes:
        path: the file read.
        manifest: the parsed ``manifest.json`` (``format`` and ``format_version`` checked).
        weights: per network (``mots``, ``semantic``), its state dict.
        model_card: the text of ``model_card.md``.
    """

    path: Path
    manifest: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]]
    model_card: str


def default_weight_format() -> str:
    """``safetensors`` where the package is installed, else ``torch``."""
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return "torch"
    return "safetensors"


def _encode_weights(state: Mapping[str, torch.Tensor], weight_format: str) -> bytes:
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    if weight_format == "safetensors":
        from safetensors.torch import save

        return save(tensors)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def _decode_weights(data: bytes, weight_format: str, where: str) -> dict[str, torch.Tensor]:
    if weight_format == "safetensors":
        try:
            from safetensors.torch import load as load_safetensors
        except ImportError:
            raise file_error(where, "weights are safetensors; install safetensors to read them") from None
    try:
        if weight_format == "safetensors":
            state = dict(load_safetensors(data))
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # each library raises its own types for damaged data
        raise file_error(where, f"unreadable weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise file_error(where, "the weights are not a state dict of tensors")
    return state


def write_bundle(
    path: str | Path,
    manifest: Mapping[str, Any],
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    model_card: str,
    weight_format: str | None = None,
) -> Path:
    """Write a bundle atomically; return its path.

    Args:
        path: the bundle file (``.hvps`` by convention).
        manifest: everything but the weights; ``format``, ``format_version`` and each
            network's ``weights`` / ``weights_format`` entries are filled in here.
        weights: per network of :data:`NETWORKS`, its state dict.
        model_card: the Markdown model card.
        weight_format: ``safetensors`` or ``torch`` (default: :func:`default_weight_format`).
    """
    path = Path(path)
    weight_format = weight_format or default_weight_format()
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format must be one of {sorted(WEIGHT_FORMATS)}, got {weight_format!r}")
    document = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, **dict(manifest)}
    networks = {name: dict(entry) for name, entry in document.get("networks", {}).items()}
    members: dict[str, bytes] = {}
    for name in NETWORKS:
        member = f"{name}{WEIGHT_FORMATS[weight_format]}"
        members[member] = _encode_weights(weights[name], weight_format)
        networks[name] = {**networks.get(name, {}), "weights": member, "weights_format": weight_format}
    document["networks"] = networks
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(MANIFEST, json.dumps(document, indent=2) + "\n", zipfile.ZIP_DEFLATED)
        archive.writestr(MODEL_CARD, model_card, zipfile.ZIP_DEFLATED)
        for member, data in members.items():
            archive.writestr(member, data, zipfile.ZIP_STORED)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a bundle's manifest only (format, version, the networks' entries).

    Raises:
        HVPSError: naming the file if it is missing, not a bundle, of another format version,
            or lacks a part.
    """
    path = Path(path)
    with _open(path) as archive:
        return _manifest(path, archive)


def read_bundle(path: str | Path) -> Bundle:
    """Read a bundle: manifest, weights and model card.

    Raises:
        HVPSError: naming the file if it is missing, not a bundle, of another format version,
            lacks a part, or a part is damaged.
    """
    path = Path(path)
    with _open(path) as archive:
        manifest = _manifest(path, archive)
        weights = {}
        for name in NETWORKS:
            entry = manifest["networks"][name]
            member = entry["weights"]
            data = _member(path, archive, member)
            weights[name] = _decode_weights(data, entry["weights_format"], f"{path} ({member})")
        card = _member(path, archive, MODEL_CARD).decode("utf-8", errors="replace")
    return Bundle(path, manifest, weights, card)


def _open(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise file_error(path, "file not found")
    if path.is_dir():
        raise file_error(path, "is a folder; a bundle is one file written by `hvps bundle`")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise file_error(path, f"not a model bundle (not a zip archive: {exc})") from None


def _member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise file_error(path, f"incomplete bundle: {name} is missing") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC mismatch, truncated member
        raise file_error(path, f"damaged bundle: {name} cannot be read ({exc})") from None


def _manifest(path: Path, archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(_member(path, archive, MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise file_error(path, f"damaged bundle: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise file_error(path, f"not a model bundle ({MANIFEST} does not say format {BUNDLE_FORMAT!r})")
    version = manifest.get("format_version")
    if version != BUNDLE_VERSION:
        raise file_error(
            path,
            f"bundle format version {version}, but this hvps-lightning reads version {BUNDLE_VERSION} "
            f"(written by hvps-lightning {manifest.get('written_by', 'unknown')}); rebuild it with "
            "`hvps bundle` from the checkpoints",
        )
    networks = manifest.get("networks")
    if not isinstance(networks, dict):
        raise file_error(path, f"incomplete bundle: {MANIFEST} has no 'networks'")
    for name in NETWORKS:
        entry = networks.get(name)
        if not isinstance(entry, dict):
            raise file_error(path, f"incomplete bundle: no {name} network in {MANIFEST}")
        if entry.get("weights_format") not in WEIGHT_FORMATS or not isinstance(entry.get("weights"), str):
            raise file_error(path, f"incomplete bundle: the {name} network has no weights entry")
        if entry["weights"] not in archive.namelist():
            raise file_error(path, f"incomplete bundle: {entry['weights']} ({name} weights) is missing")
    if MODEL_CARD not in archive.namelist():
        raise file_error(path, f"incomplete bundle: {MODEL_CARD} is missing")
    return manifest


# Dataset specs ---------------------------------------------------------------------------------
#: the fields of a spec a bundle stores (what inference, fusion, MOTS txt and overlays read)
SPEC_FIELDS = ("name", "class_names", "thing_ids", "ignore_label", "label_divisor", "colors", "fps",
               "mots_class_ids")  # fmt: skip


def spec_to_dict(spec: DatasetSpec) -> dict[str, Any]:
    """The spec's fields a bundle stores, as JSON values."""
    return {
        "name": spec.name,
        "class_names": list(spec.class_names),
        "thing_ids": list(spec.thing_ids),
        "ignore_label": int(spec.ignore_label),
        "label_divisor": int(spec.label_divisor),
        "colors": [list(c) for c in spec.colors],
        "fps": float(spec.fps),
        "mots_class_ids": {str(k): int(v) for k, v in spec.mots_class_ids.items()},
    }


def spec_from_dict(data: Mapping[str, Any], where: str | Path) -> DatasetSpec:
    """The spec a bundle stored: its own fields, with the layout of the registered spec of that name.

    Raises:
        HVPSError: naming ``where`` if a field is missing or malformed.
    """
    missing = [f for f in SPEC_FIELDS if f not in data]
    if missing:
        raise file_error(where, f"incomplete bundle: the dataset spec lacks {', '.join(missing)}")
    try:
        registered = SPECS.get(str(data["name"]))
        return DatasetSpec(
            name=str(data["name"]),
            class_names=tuple(str(c) for c in data["class_names"]),
            thing_ids=tuple(int(t) for t in data["thing_ids"]),
            ignore_label=int(data["ignore_label"]),
            label_divisor=int(data["label_divisor"]),
            layout=registered.layout if registered is not None else "step",
            splits=registered.splits if registered is not None else {},
            colors=tuple((int(c[0]), int(c[1]), int(c[2])) for c in data["colors"]),
            image_size=registered.image_size if registered is not None else (0, 0),
            fps=float(data["fps"]),
            mots_class_ids={int(k): int(v) for k, v in dict(data["mots_class_ids"]).items()},
        )
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise file_error(where, f"damaged bundle: malformed dataset spec ({exc})") from None
