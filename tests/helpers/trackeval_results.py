"""TrackEval's MOTS results in the keys of `hvps evaluate mots` (for tests that compare the two)."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_hvps(result: dict[str, Any]) -> dict[str, float]:
    """One TrackEval class result (``{"CLEAR": ..., "Identity": ..., "HOTA": ...}``) as our metrics."""
    clear, identity, hota = result["CLEAR"], result["Identity"], result["HOTA"]
    return {
        "sMOTSA": clear["sMOTA"], "MOTSA": clear["MOTA"], "MOTSP": clear["MOTP"], "IDF1": identity["IDF1"],
        "TP": clear["CLR_TP"], "FP": clear["CLR_FP"], "FN": clear["CLR_FN"], "IDSW": clear["IDSW"],
        "HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
    }  # fmt: skip


def evaluator_config() -> dict[str, Any]:
    """TrackEval's evaluator, quiet and writing nothing."""
    return {"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "TIME_PROGRESS": False,
            "OUTPUT_EMPTY_CLASSES": True}  # fmt: skip
