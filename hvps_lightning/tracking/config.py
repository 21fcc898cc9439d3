"""Tracker parameters: one explicit field per parameter, with its default and its search range.

Tracking (:class:`~hvps_lightning.tracking.tracker.Tracker`, ``hvps track``, the offline
callback) and tuning (``hvps sweep tracker``) read the same fields. Each field's range sits
in its metadata next to the default; :meth:`TrackerConfig.search_space` collects them.
``hvps_lightning/configs/tracker/default.yaml`` repeats defaults and ranges in the boxmot style
(``name: {default: ..., kind: ..., low: ..., high: ...}``); a test keeps it equal to this file.

YAML files given to :meth:`TrackerConfig.from_yaml` may be flat (``score_threshold: 0.5``,
what :meth:`TrackerConfig.to_yaml` writes and sweeps export) or in the boxmot style (the
``default`` of each entry is used). Unknown keys and values of the wrong type or out of
their valid domain are an :class:`~hvps_lightning.errors.HVPSError`.

Example:
    >>> config = TrackerConfig.from_dict({"min_hits": 3, "long_term_enabled": False})
    >>> config.min_hits, config.long_term_enabled, config.max_age
    (3, False, 5)
    >>> space = TrackerConfig.search_space()
    >>> space["motion_model"].choices
    ('constant_velocity', 'kalman')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.io import atomic_open, read_text_file, resolve_config

ParamKind = Literal["float", "int", "bool", "categorical"]


@dataclass(frozen=True)
class ParamRange:
    """The search range of one tracker parameter.

    Attributes:
        kind: ``float``, ``int``, ``bool`` or ``categorical``.
        low: lower bound (float/int).
        high: upper bound (float/int), inclusive.
        log: sample on a log scale (float/int).
        choices: the values of a categorical (or bool) parameter.
    """

    kind: ParamKind
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the range as a plain dict (for YAML), without unset entries."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.low is not None:
            out["low"] = self.low
            out["high"] = self.high
        if self.log:
            out["log"] = True
        if self.choices is not None and self.kind == "categorical":
            out["choices"] = list(self.choices)
        return out


def _param(default: Any, search: ParamRange | None, help: str, valid: tuple[Any, Any] | None = None) -> Any:
    # ``valid``: the domain any value must lie in (inclusive); the search range is a subset.
    return field(default=default, metadata={"search": search, "help": help, "valid": valid})


def _float(low: float, high: float, log: bool = False) -> ParamRange:
    return ParamRange("float", low, high, log)


def _int(low: int, high: int, log: bool = False) -> ParamRange:
    return ParamRange("int", low, high, log)


_BOOL = ParamRange("bool", choices=(False, True))
_INF = math.inf

MotionModel = Literal["constant_velocity", "kalman"]
GalleryDistance = Literal["min", "mean"]
Association = Literal["joint", "cascade"]
_CHOICES: dict[str, tuple[str, ...]] = {
    "motion_model": ("constant_velocity", "kalman"),
    "gallery_distance": ("min", "mean"),
    "association": ("joint", "cascade"),
}


@dataclass(frozen=True)
class TrackerConfig:
    """Every parameter of the IA-MOT style tracker (see ``tracker.py`` for how each is used).

    Distances between embeddings are cosine distances ``1 - cos`` in [0, 2]; centre
    distances are in units of the predicted box size ``sqrt(w * h)``.
    """

    # Detections --------------------------------------------------------------------------
    score_threshold: float = _param(
        0.5, _float(0.05, 0.95), "detections below this score are dropped", (0, 1)
    )
    birth_score_threshold: float = _param(
        0.6, _float(0.05, 0.99), "a new track needs a detection at least this confident", (0, 1)
    )
    min_hits: int = _param(
        2, _int(1, 5), "detections a new track needs before it is confirmed and gets an id", (1, 1000)
    )
    backfill_tentative: bool = _param(
        True, _BOOL, "track_sequence also outputs a confirmed track's tentative frames (offline)"
    )
    # Association structure ---------------------------------------------------------------
    association: Association = _param(  # noqa: RUF009
        "joint", ParamRange("categorical", choices=_CHOICES["association"]),
        "joint: one assignment over live, lost and long-lost tracks; cascade: live, retrieval, re-ID in turn",
    )  # fmt: skip
    use_embeddings: bool = _param(
        True, None, "false: motion-only tracking (IoU/motion association, no appearance, no re-ID)"
    )
    camera_motion: bool = _param(
        True, _BOOL, "apply the frames' camera transforms (FrameDetections.camera_motion) to the predictions"
    )
    age_cost: float = _param(
        0.0, _float(0.0, 0.05), "joint: cost added per frame a track has been lost (younger tracks win ties)",
        (0, 1),
    )  # fmt: skip
    reid_ratio: float = _param(
        0.7, _float(0.5, 1.0),
        "joint: a lost track's match needs distance <= ratio * every competing pair's (.inf: off)", (0, _INF),
    )  # fmt: skip
    # Appearance --------------------------------------------------------------------------
    embedding_momentum: float = _param(
        0.8, _float(0.0, 0.98), "EMA: appearance = m * appearance + (1 - m) * detection embedding", (0, 1)
    )
    gallery_size: int = _param(10, _int(1, 100), "embeddings kept per track for re-ID", (1, 10000))
    appearance_update_max_distance: float = _param(
        0.2, _float(0.05, 1.0), "a match updates the track's appearance only if its distance is at most this",
        (0, 2),
    )  # fmt: skip
    appearance_update_max_overlap: float = _param(
        0.15, _float(0.0, 1.0), "... and only if the detection's box overlaps no other one above this IoU",
        (0, 1),
    )  # fmt: skip
    gallery_distance: GalleryDistance = _param(  # noqa: RUF009
        "min", ParamRange("categorical", choices=_CHOICES["gallery_distance"]),
        "how a detection's distance to a gallery is reduced over its embeddings",
    )  # fmt: skip
    # Association of live tracks (tracks seen in the previous frame) ---------------------------
    max_embedding_distance: float = _param(
        0.4, _float(0.05, 1.5), "gate: cosine distance between a track's EMA and a detection", (0, 2)
    )
    min_iou: float = _param(0.1, _float(0.0, 0.7), "gate: IoU of predicted and detected box", (0, 1))
    max_centre_distance: float = _param(
        1.0, _float(0.1, 3.0), "gate: centre distance / sqrt(w * h) of the predicted box", (0, _INF)
    )
    iou_cost_weight: float = _param(
        0.2, _float(0.0, 1.0), "cost = (1 - w) * embedding distance + w * (1 - IoU)", (0, 1)
    )
    # Motion ------------------------------------------------------------------------------
    motion_model: MotionModel = _param(  # noqa: RUF009
        "constant_velocity", ParamRange("categorical", choices=_CHOICES["motion_model"]),
        "how boxes are predicted into the next frame",
    )  # fmt: skip
    velocity_momentum: float = _param(
        0.5, _float(0.0, 0.95), "constant velocity: EMA smoothing of the per-frame box velocity", (0, 1)
    )
    kalman_position_noise: float = _param(
        1 / 20, _float(0.005, 0.5, log=True), "Kalman: position noise std relative to box height", (0, _INF)
    )
    kalman_velocity_noise: float = _param(
        1 / 160, _float(0.0005, 0.1, log=True), "Kalman: velocity noise std relative to box height", (0, _INF)
    )
    # Short-term retrieval ------------------------------------------------------------------
    short_term_enabled: bool = _param(True, _BOOL, "retrieve tracks lost for a few frames by motion")
    short_term_frames: int = _param(
        5, _int(1, 30), "tracks lost for at most this many frames take part in retrieval", (1, 100000)
    )
    short_term_max_embedding_distance: float = _param(
        0.4, _float(0.05, 1.5), "retrieval gate: cosine distance", (0, 2)
    )
    short_term_min_iou: float = _param(
        0.0, _float(0.0, 0.5), "retrieval gate: IoU with the predicted box", (0, 1)
    )
    short_term_max_centre_distance: float = _param(
        2.0, _float(0.25, 5.0), "retrieval gate: centre distance / sqrt(w * h)", (0, _INF)
    )
    # Long-term re-ID -------------------------------------------------------------------------
    long_term_enabled: bool = _param(True, _BOOL, "reconnect tracks lost for long by appearance alone")
    long_term_frames: int = _param(
        250, _int(30, 300, log=True), "tracks lost longer than this die (their id is never reused early)",
        (1, 1000000),
    )  # fmt: skip
    reid_max_distance: float = _param(
        0.25, _float(0.05, 1.0), "re-ID gate: gallery distance of a detection to a lost track", (0, 2)
    )
    reid_max_centre_distance: float = _param(
        1.0, _float(0.25, 4.0),
        "joint re-ID gate: centre distance / box extent from the track's extrapolated path (.inf: off)",
        (0, _INF),
    )  # fmt: skip
    reid_centre_distance_per_frame: float = _param(
        0.05,
        _float(0.0, 0.3),
        "joint re-ID gate: what the centre distance gate grows per frame lost",
        (0, _INF),
    )
    tracklet_reid_frames: int = _param(
        10, _int(0, 30), "a new tracklet may be merged into a lost track during its first N frames (0: off)",
        (0, 1000000),
    )  # fmt: skip
    # Output -------------------------------------------------------------------------------
    min_visible_fraction: float = _param(
        0.0, _float(0.0, 0.9), "drop an output whose mask keeps less than this after overlap removal", (0, 1)
    )
    max_track_id: int = _param(
        999, None, "largest track id (label divisor - 1); past it the longest-dead ids are reused", (1, 65535)
    )

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            object.__setattr__(self, spec.name, _check_value(spec, value))
        # Settings that contradict each other (each message names the key to change).
        if (
            self.short_term_enabled
            and self.long_term_enabled
            and self.long_term_frames < self.short_term_frames
        ):
            raise HVPSError(
                f"long_term_frames: {self.long_term_frames} is shorter than short_term_frames "
                f"{self.short_term_frames} (the re-ID window must cover the retrieval window)"
            )
        if self.long_term_enabled and not self.use_embeddings:
            raise HVPSError(
                "long_term_enabled: re-ID needs embeddings; set it to false with use_embeddings: false"
            )

    # Derived ------------------------------------------------------------------------------
    @property
    def max_age(self) -> int:
        """Frames a track may stay lost before it dies: the longest enabled lost-track window."""
        ages = [0]
        if self.short_term_enabled:
            ages.append(self.short_term_frames)
        if self.long_term_enabled:
            ages.append(self.long_term_frames)
        return max(ages)

    # Ranges -------------------------------------------------------------------------------
    @classmethod
    def search_space(cls) -> dict[str, ParamRange]:
        """Return the search range of every tunable parameter (name -> :class:`ParamRange`)."""
        fields = dataclasses.fields(cls)
        return {f.name: f.metadata["search"] for f in fields if f.metadata["search"] is not None}

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Return a one-line description of every parameter."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}

    # Conversion ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a flat dict of plain values."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrackerConfig:
        """Return a copy with some parameters changed (checked like :meth:`from_dict`)."""
        return self.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "tracker config") -> TrackerConfig:
        """Build a config from a flat or boxmot-style dict; missing keys keep their defaults.

        Raises:
            HVPSError: ``<where>: ...`` for unknown keys or invalid values.
        """
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise HVPSError(f"{where}: expected a mapping of parameters, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise HVPSError(
                f"{where}: unknown tracker parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        flat = {}
        for key, value in values.items():
            if isinstance(value, dict):
                if "default" not in value:
                    raise HVPSError(f"{where}: {key}: an entry given as a mapping needs a 'default'")
                value = value["default"]
            flat[key] = value
        try:
            return cls(**flat)
        except HVPSError as exc:
            raise HVPSError(f"{where}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrackerConfig:
        """Read a config from a YAML file (flat or boxmot style), or a shipped one (``tracker/default``).

        Raises:
            HVPSError: naming the file if it is missing, not YAML, or holds bad parameters.
        """
        path = resolve_config(path, option="")
        text = read_text_file(
            path, missing="tracker config not found", unreadable="unreadable tracker config"
        )
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise file_error(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(values if values is not None else {}, where=str(path))

    def to_yaml(self, path: str | Path, with_ranges: bool = False) -> None:
        """Write the config as YAML (atomically).

        Args:
            path: the file to write.
            with_ranges: write the boxmot style ``{default, kind, low, high, ...}`` with the
                search ranges and descriptions instead of flat values.
        """
        with atomic_open(path, "w", encoding="utf-8") as handle:
            handle.write(self.to_yaml_text(with_ranges))

    def to_yaml_text(self, with_ranges: bool = False) -> str:
        """Return what :meth:`to_yaml` writes."""
        if not with_ranges:
            return yaml.safe_dump(self.to_dict(), sort_keys=False)
        lines = [
            "# Tracker parameters: default and search range of each (hvps_lightning/tracking/config.py).",
            "# `hvps track --tracker-config` and `hvps sweep tracker` read this file; a test keeps it",
            "# equal to TrackerConfig. Regenerate with:",
            '#   python -c "from hvps_lightning.tracking.config import TrackerConfig as C; '
            "C().to_yaml('hvps_lightning/configs/tracker/default.yaml', with_ranges=True)\"",
        ]
        space = self.search_space()
        for spec in dataclasses.fields(self):
            entry: dict[str, Any] = {"default": getattr(self, spec.name)}
            search = space.get(spec.name)
            entry.update(search.to_dict() if search is not None else {"kind": "fixed"})
            lines.append(f"# {spec.metadata['help']}")
            text = yaml.safe_dump(entry, sort_keys=False, default_flow_style=True, width=200)
            lines.append(f"{spec.name}: {text.strip()}")
        return "\n".join(lines) + "\n"


def _check_value(spec: dataclasses.Field, value: Any) -> Any:
    """Check ``value`` against the field's type and domain; return it coerced (int -> float)."""
    name, default = spec.name, spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise HVPSError(f"{name}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise HVPSError(f"{name}: expected an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HVPSError(f"{name}: expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise HVPSError(f"{name}: NaN is not a valid value")
    elif isinstance(default, str):
        choices = _CHOICES[name]
        if value not in choices:
            raise HVPSError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    valid = spec.metadata["valid"]
    if valid is not None and not (valid[0] <= value <= valid[1]):
        raise HVPSError(f"{name}: {value!r} is outside the valid range [{valid[0]}, {valid[1]}]")
    return value
