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


def scale_text(scale: float) -> str:
    """`2^40` for a power of two (a loss scale usually is), else the number."""
    exponent = math.log2(scale) if scale > 0 else 0.5
    return f"2^{int(exponent)}" if exponent.is_integer() else number(scale)


def size_text(count: int) -> str:
    """`1.2 MB`, `340 kB`, `96 bytes`: a byte count as a person reads it."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"
