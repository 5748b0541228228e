"""JSON output helpers shared by every command that writes machine-readable results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def json_clean(value: Any) -> Any:
    """JSON-safe copy: numpy → Python, NaN/inf → None (JSON has no NaN), paths → str."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_clean(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value
