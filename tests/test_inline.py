"""What the Dagster UI shows on an asset page without a click: Markdown under 1,000 characters
(Dagster 1.13's own threshold), SVG charts that parse, tables that say what they left out."""

import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from stockml_assets import inline
from stockml_core.decisions.promotion import reading_table, shown_value


def _svg(md: str) -> ET.Element:
    m = re.fullmatch(r"!\[[^\]]*\]\(<data:image/svg\+xml,(.*)>\)", md, re.S)
    assert m, md[:120]
    return ET.fromstring(unquote(m.group(1)))


def _paths(svg: ET.Element) -> list[str]:
    return [e.get("d") for e in svg.iter("{http://www.w3.org/2000/svg}path")]


def _points(d: str) -> np.ndarray:
    """Absolute points of an 'M x,y l dx,dy ...' path."""
    head, rel = d[1:].split("l")
    nums = [float(v) for v in re.findall(r"-?\d+", rel)]
    x0, y0 = (float(v) for v in head.split(","))
    steps = np.array(nums).reshape(-1, 2)
    return np.vstack([[x0, y0], np.array([x0, y0]) + np.cumsum(steps, axis=0)])


def test_line_charts_fit_inline_parse_and_keep_their_shape():
    dates = pd.bdate_range("2013-01-01", periods=1_200)
    rng = np.random.default_rng(0)
    a, b = np.cumprod(1 + rng.normal(4e-4, 0.01, 1_200)), np.cumprod(1 + rng.normal(2e-4, 0.01, 1_200))
    md = inline.line_chart("v0007 decile book, net of costs, to 2017-06-30", dates, {"candidate v0007": a, "momentum_12_1": b}).value
    assert len(md) < inline.INLINE_LIMIT
    svg = _svg(md)
    texts = " ".join(t.text or "" for t in svg.iter() if t.text)
    assert "v0007 decile book" in texts and "2013-01-01" in texts and f"{dates[-1]:%Y-%m-%d}" in texts
    lines = [p for p in _paths(svg) if "l" in p]
    assert len(lines) == 2
    pts = _points(lines[0])
    assert len(pts) >= 15 and pts[0][0] == inline.LEFT and pts[-1][0] == inline.RIGHT
    # The highest value is drawn at the top of the plot and the lowest at the bottom (one scale for both series).
    ys = np.concatenate([_points(p)[:, 1] for p in lines])
    assert ys.min() >= inline.TOP and ys.max() <= inline.BOTTOM


def test_a_drift_chart_keeps_one_day_spikes_and_marks_the_days_above_the_threshold():
    dates = pd.bdate_range("2016-01-01", periods=250)
    score = np.full(250, 0.1)
    score[137] = 0.9  # one day, between sampled points
    md = inline.line_chart(
        "drift score to 2016-12-15", dates, {"score": score}, hline=0.46, hline_label="threshold 0.46", marks=[137], peaks=True
    ).value
    assert len(md) < inline.INLINE_LIMIT
    paths = _paths(_svg(md))
    line = next(p for p in paths if "l" in p)
    assert _points(line)[:, 1].min() == inline.TOP  # the spike is the chart's top
    sampled = inline.line_chart("drift score", dates, {"score": score}, points=20).value
    assert _points(next(p for p in _paths(_svg(sampled)) if "l" in p))[:, 1].min() > inline.TOP  # plain sampling misses it
    assert any(p.endswith("v6") for p in paths)  # the tick of the day above the threshold


def test_bar_chart_and_tables_fit_or_say_what_is_left_out():
    md = inline.bar_chart("v0002: mean |SHAP|, latest 2017-11-10", [f"feature_{i}" for i in range(10)], np.linspace(1, 0.1, 10)).value
    assert len(md) < inline.INLINE_LIMIT and len(list(_svg(md).iter("{http://www.w3.org/2000/svg}rect"))) >= 3
    wide = pd.DataFrame({"criterion": [f"criterion_number_{i}" for i in range(60)], "value": np.arange(60.0)})
    table = inline.small_table(wide).value
    assert len(table) < inline.INLINE_LIMIT and re.search(r"_\d+ more rows behind the full table_", table)
    # A chart that cannot be drawn small enough says so instead of failing the step.
    days = pd.bdate_range("2017-01-02", periods=3)
    assert "too much to draw inline" in inline.line_chart("x" * 900, days, {"s": [1.0, 2.0, 3.0]}).value
    with pytest.raises(inline.TooLong):
        inline.inline_md("y" * inline.INLINE_LIMIT)


def test_criteria_read_pass_fail_or_na_never_nan():
    frame = pd.DataFrame(
        {
            "name": ["rank_ic_t", "worst_sector_accuracy", "crash_regime_rank_ic", "rank_ic_vs_best_baseline"],
            "value": [1.234567, 0.31234, np.nan, 0.0123456],
            "op": [">=", ">=", ">=", ">="],
            "threshold": [2.0, 0.30, np.nan, 0.02],
            "outcome": ["fail", "pass", "not applicable", "fail"],
        }
    )
    table = reading_table(frame)
    assert table.to_dict("list") == {
        "criterion": list(frame.name),
        "outcome": ["**FAIL**", "pass", "n/a", "**FAIL**"],
        "value": ["1.23", "31.2%", "n/a", "0.0123"],
        "rule": [">= 2.00", ">= 30.0%", "", ">= 0.0200"],
    }
    assert "nan" not in table.to_markdown().lower()
    assert shown_value("rank_ic", None) == "n/a" and shown_value("replay_improvement", 0.5) == "50.0%"
