"""One fixed colour per mode, the same in every picture whichever modes are drawn.

    >>> from dashnb._colors import mode_color
    >>> mode_color("shared")
    '#ff7f0e'

Read by the measurement plots (``dashnb._plot``) and the lab (its figure and check boxes).
"""

from __future__ import annotations

import colorsys
import zlib

from ._modes.registry import MODES

__all__ = ["MODE_COLORS", "mode_color"]

#: The modes known today, in matplotlib's tab10 colours (the first three as before: blue, orange,
#: green). Red is left out: the plot marks failed calls in red.
MODE_COLORS = {
    "per_call": "#1f77b4",
    "shared": "#ff7f0e",
    "async": "#2ca02c",
    "sdk_default": "#9467bd",
    "threads": "#8c564b",
    "async_per_call": "#e377c2",
    "sdk_threads": "#17becf",
    "sdk_async": "#bcbd22",
}
# Modes added to the registry later get colours handed out in registry order, so a mode's colour
# depends on the code, never on what is ticked: hues a golden angle apart (each new one lands in
# the widest gap left), three lightnesses in turn, never the pure red of failed calls.
_GOLDEN = 0.618033988749895


def _spare_color(i: int) -> str:
    hue = (0.08 + i * _GOLDEN) % 1.0
    if hue < 0.03 or hue > 0.97:  # red is for failures
        hue = (hue + 0.06) % 1.0
    lightness = (0.5, 0.34, 0.64)[i % 3]
    r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.62)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def mode_color(name: str) -> str:
    """The fixed colour of mode ``name`` (a hex string), the same in every plot of the lab."""
    if name in MODE_COLORS:
        return MODE_COLORS[name]
    later = [m for m in MODES if m not in MODE_COLORS]
    if name in later:
        return _spare_color(later.index(name))
    # Not a registered mode (a result loaded from elsewhere): stable across runs and processes.
    return _spare_color(len(later) + zlib.crc32(name.encode()) % 64)
