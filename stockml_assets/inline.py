"""Plots and tables that the Dagster UI shows on an asset's page without a click.

Dagster 1.13 renders a Markdown metadata value in place (the latest materialization's metadata on
the asset page, and each event's row) only while it is shorter than 1,000 characters
(``ui-core/src/metadata/MetadataEntry.tsx``: ``expandSmallValues && entry.mdStr.length < 1000``);
a longer one, such as a PNG embedded in base64, sits behind "[Show Markdown]". Its sanitizer lets
``data:`` image sources through (``MarkdownWithPlugins.tsx``). So what a reader must see when the
page opens is written small: a Markdown table of a few short columns, or an SVG chart of a few
dozen points with its title, as a percent-encoded ``data:image/svg+xml`` URI in a Markdown image.
The full tables and full-resolution PNGs stay beside them, behind the click.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd
from dagster import MetadataValue

INLINE_LIMIT = 1000  # Dagster's own threshold (characters of Markdown)
WIDTH, HEIGHT = 320, 130
LEFT, RIGHT, TOP, BOTTOM = 36, 316, 26, 112
COLORS = ("steelblue", "darkorange", "gray", "seagreen")
MARK = "crimson"


def _no_room(title: str) -> MetadataValue:
    """What a chart that cannot be drawn small enough shows instead: a presentation limit never fails a step."""
    return MetadataValue.md(f"_{_esc(title)[:200]}: too much to draw inline; see the full plot_")


class TooLong(ValueError):
    """The Markdown would be cut behind a click (``INLINE_LIMIT``)."""


def fits(md: str) -> bool:
    return len(md) < INLINE_LIMIT


def inline_md(md: str) -> MetadataValue:
    """``md`` as a Markdown value, refused if Dagster would not show it inline."""
    if not fits(md):
        raise TooLong(f"{len(md)} characters of Markdown: Dagster shows only < {INLINE_LIMIT} inline")
    return MetadataValue.md(md)


_SAFE = " =:;,./-+_!*?&@[]'"


def _svg_md(svg: str, alt: str) -> str:
    # A pointy-bracket destination may hold spaces (CommonMark), so only what a URI or Markdown
    # cannot carry is escaped: < > # % " ( ) and newlines.
    return f"![{alt}](<data:image/svg+xml,{quote(svg, safe=_SAFE)}>)"


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3f}"


def _esc(text: str) -> str:
    return str(text).replace("&", "and").replace("<", "").replace(">", "").replace("'", "")


def _path(xs: np.ndarray, ys: np.ndarray) -> str:
    """An SVG path through integer points: an absolute move, then relative lines (a minus sign
    separates numbers by itself)."""
    out = [f"M{xs[0]},{ys[0]}l"]
    first = True
    for dx, dy in zip(np.diff(xs).tolist(), np.diff(ys).tolist(), strict=True):
        for v in (dx, dy):
            out.append(("" if first or v < 0 else ",") + str(v))
            first = False
    return "".join(out)


def _frame(title: str, lo: float, hi: float, x_first: str, x_last: str) -> list[str]:
    return [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' font-size='9'>",
        f"<text x='2' y='10'>{_esc(title)}</text>",
        f"<text x='2' y='{TOP + 6}'>{_fmt(hi)}</text><text x='2' y='{BOTTOM}'>{_fmt(lo)}</text>",
        f"<path d='M{LEFT},{TOP}V{BOTTOM}H{RIGHT}' fill='none' stroke='silver'/>",
        f"<text x='{LEFT}' y='{HEIGHT - 6}'>{_esc(x_first)}</text><text x='{RIGHT}' y='{HEIGHT - 6}' text-anchor='end'>{_esc(x_last)}</text>",
    ]


def line_chart(
    title: str,
    x: Sequence,
    series: dict[str, Sequence[float]],
    *,
    hline: float | None = None,
    hline_label: str = "",
    marks: Sequence[int] = (),
    points: int = 80,
    peaks: bool = False,
    max_marks: int = 12,
) -> MetadataValue:
    """A line per series over ``x`` (dates or numbers), sampled to as many evenly spaced points as fit
    inline (at most ``points``), with an optional dashed threshold and marked positions of ``x``
    (e.g. the days a score crossed its threshold; the last ``max_marks`` distinct ones). ``peaks``: each point is the largest value
    since the previous one, so a one-day spike is never sampled away (a drift score)."""
    x = list(x)
    arrays = {k: np.asarray(v, dtype=float) for k, v in series.items()}
    n = len(x)
    if not n or not arrays:
        return inline_md("_(no data)_")
    values = np.concatenate([a[np.isfinite(a)] for a in arrays.values()] + ([np.array([hline])] if hline is not None else []))
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5

    def label(v) -> str:
        return f"{pd.Timestamp(v):%Y-%m-%d}" if isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "year") else _fmt(float(v))

    def y_of(v: np.ndarray) -> np.ndarray:
        return np.rint(BOTTOM - (v - lo) / (hi - lo) * (BOTTOM - TOP)).astype(int)

    legend = list(zip(arrays, COLORS, strict=False)) + ([(hline_label, MARK)] if hline is not None and hline_label else [])
    for k in range(min(points, n), 0, -4):
        idx = np.unique(np.rint(np.linspace(0, n - 1, k)).astype(int))
        xs = np.rint(LEFT + idx / max(n - 1, 1) * (RIGHT - LEFT)).astype(int)
        parts = _frame(title, lo, hi, label(x[0]), label(x[-1]))
        for a, color in zip(arrays.values(), COLORS, strict=False):
            v = a[idx]
            if peaks:
                with np.errstate(all="ignore"):
                    v = np.array(
                        [
                            np.nanmax(a[lo_i : hi_i + 1]) if np.isfinite(a[lo_i : hi_i + 1]).any() else np.nan
                            for lo_i, hi_i in zip(np.concatenate([[0], idx[:-1] + 1]), idx, strict=True)
                        ]
                    )
            keep = np.flatnonzero(np.isfinite(v))
            if len(keep) >= 2:
                parts.append(f"<path d='{_path(xs[keep], y_of(v[keep]))}' fill='none' stroke='{color}'/>")
            elif len(keep) == 1:  # one day so far: a dot
                parts.append(f"<circle cx='{xs[keep[0]]}' cy='{y_of(v[keep])[0]}' r='3' fill='{color}'/>")
        if hline is not None:
            parts.append(f"<path d='M{LEFT},{int(y_of(np.array([hline]))[0])}H{RIGHT}' stroke='{MARK}' stroke-dasharray='3'/>")
        if len(marks):  # a tick at the top of the plot on each marked position
            at = np.unique(np.rint(LEFT + np.asarray(marks, dtype=float) / max(n - 1, 1) * (RIGHT - LEFT)).astype(int))[-max_marks:]
            d = f"M{at[0]},{TOP - 4}v6" + "".join(f"m{dx},-6v6" for dx in np.diff(at).tolist())
            parts.append(f"<path d='{d}' stroke='{MARK}' stroke-width='2'/>")
        parts.append("<text x='2' y='20'>" + " ".join(f"<tspan fill='{c}'>{_esc(nm)}</tspan>" for nm, c in legend) + "</text></svg>")
        md = _svg_md("".join(parts), "chart")
        if fits(md):
            return MetadataValue.md(md)
    return _no_room(title)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, bars: int = 8) -> MetadataValue:
    """Horizontal bars (largest first), as many of the first ``bars`` as fit inline."""
    labels, values = [str(v) for v in labels], [float(v) for v in values]
    for k in range(min(bars, len(labels)), 0, -1):
        top = max((abs(v) for v in values[:k]), default=1.0) or 1.0
        step = (BOTTOM - TOP) // max(k, 1)
        parts = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' font-size='9'>",
            f"<text x='2' y='10'>{_esc(title)}</text>",
        ]
        for i, (name, v) in enumerate(zip(labels[:k], values[:k], strict=True)):
            y = TOP + i * step
            parts.append(
                f"<rect x='130' y='{y}' width='{max(1, round(abs(v) / top * 150))}' height='{max(step - 3, 2)}' "
                f"fill='{COLORS[0]}'/><text x='126' y='{y + step - 4}' text-anchor='end'>{_esc(name[:24])}</text>"
            )
        parts.append(f"<text x='{RIGHT}' y='{HEIGHT - 8}' text-anchor='end'>max {_fmt(top)}</text></svg>")
        md = _svg_md("".join(parts), "chart")
        if fits(md):
            return MetadataValue.md(md)
    return _no_room(title)


def small_table(df: pd.DataFrame, *, max_rows: int = 20) -> MetadataValue:
    """A Markdown table of short cells shown inline: as many of the first rows as fit, and a note of
    how many were left out."""
    for k in range(min(max_rows, len(df)), 0, -1):
        md = df.head(k).to_markdown(index=False)
        if k < len(df):
            md += f"\n\n_{len(df) - k} more rows behind the full table_"
        if fits(md):
            return MetadataValue.md(md)
    raise TooLong("not even one row fits inline")
