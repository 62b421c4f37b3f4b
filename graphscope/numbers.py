"""How graphscope writes a number in a label or a message: four significant digits."""

from __future__ import annotations

import math


def number(value: float) -> str:
    """Four significant digits, `nan`/`inf` spelled out, `-0` shown as `0`."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    return f"{value:.4g}"
