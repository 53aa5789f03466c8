"""Report charts (issue 17, item 8): a chart of one or two bars is not one block."""

from __future__ import annotations

import io

import numpy as np

from triage.reports.charts import BLUE, bars


def _bar_rows(png: bytes) -> np.ndarray:
    """A mask of the pixels in the bars' colour."""
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(png))[..., :3]
    colour = np.array([int(BLUE[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.abs(pixels - colour).sum(axis=-1) < 0.05


def _thickness(mask: np.ndarray) -> int:
    """Pixel rows of the topmost bar."""
    rows = np.flatnonzero(mask.any(axis=1))
    gaps = np.flatnonzero(np.diff(rows) > 1)
    return int(rows[gaps[0]] - rows[0] + 1) if len(gaps) else len(rows)


def test_a_one_source_chart_draws_one_bar_of_the_usual_thickness():
    one = _bar_rows(bars({"x": 5}, "Mentions by source", BLUE))
    six = _bar_rows(bars({f"s{i}": 10 - i for i in range(6)}, "Mentions by source", BLUE))
    assert one.mean() < 0.1, "the single bar fills the chart"
    assert abs(_thickness(one) - _thickness(six)) <= 2
    assert _thickness(one) < one.shape[0] / 8
    # the bar ends before the chart's right edge, with room for its number
    assert not one[:, int(one.shape[1] * 0.95) :].any()
