"""Reads offline W&B runs (their ``run-*.wandb`` transaction logs), so tests can check what was logged.

wandb ships no Python reader for that file any more (its ``DataStore`` moved into the Go
core), so this small reader of the LevelDB-style log format is written here.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OfflineRun:
    """What an offline W&B run recorded."""

    run_id: str
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    name: str = ""
    job_type: str = ""
    #: artifacts the run logged: {"name", "type", "files", "metadata"}
    artifacts: list[dict[str, Any]] = field(default_factory=list)


_BLOCK = 32768
_HEADER = 7  # file header (":W&B", magic, version) and record header (crc, length, type) alike


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    out: list[bytes] = []
    pending = b""
    pos = _HEADER
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:
            pos += room - _HEADER
            continue
        chunk = data[pos : pos + length]
        pos += length
        if kind == 1:  # full
            out.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            out.append(pending + chunk)
            pending = b""
    return out


def _put(target: dict[str, Any], item: Any) -> None:
    """Store one record item; media and dicts arrive split over nested keys and are rebuilt."""
    value = json.loads(item.value_json)
    if item.key:
        target[item.key] = value
        return
    path = list(item.nested_key)
    for part in path[:-1]:
        node = target.get(part)
        if not isinstance(node, dict):
            node = target[part] = {}
        target = node
    target[path[-1]] = value


def read_offline_run(run_dir: str | Path, timeout: float = 30.0) -> OfflineRun:
    """Read config, history rows and summary of an offline run folder (``offline-run-*``).

    ``wandb.finish()`` can return before W&B's background process has flushed the
    transaction log, so this waits up to ``timeout`` seconds for the run's exit record and
    then reads what is there.

    Raises:
        ValueError: if the folder holds no transaction log.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise ValueError(f"{run_dir}: no run-*.wandb file (not a W&B run folder)")
    run = OfflineRun(run_id=logs[0].stem.removeprefix("run-"))
    deadline = time.monotonic() + timeout
    while True:
        records = []
        try:
            for raw in _records(logs[0]):
                record = pb.Record()
                record.ParseFromString(raw)
                records.append(record)
            complete = any(r.WhichOneof("record_type") == "exit" for r in records)
        except Exception:  # a record still being written: read again
            if time.monotonic() > deadline:
                raise
            complete = False
        if complete or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.name = record.run.run_group, record.run.display_name
            run.job_type = record.run.job_type
            for item in record.run.config.update:
                _put(run.config, item)
        elif kind == "config":
            for item in record.config.update:
                _put(run.config, item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item)
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(run.summary, item)
        elif kind == "artifact":
            artifact = record.artifact
            run.artifacts.append({
                "name": artifact.name,
                "type": artifact.type,
                "files": sorted(entry.path for entry in artifact.manifest.contents),
                "metadata": json.loads(artifact.metadata) if artifact.metadata else {},
            })  # fmt: skip
    return run


def find_offline_runs(root: str | Path) -> list[Path]:
    """Return the offline run folders under ``root`` (oldest first)."""
    return sorted(Path(root).rglob("offline-run-*"), key=lambda p: p.name)
