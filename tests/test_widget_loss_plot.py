"""The loss plot's legend sits in its own strip above the curves, never over them."""

from __future__ import annotations

import pytest

from napari_sparseseg.widget.loss_plot import LossPlot


@pytest.mark.parametrize("width", [180, 260, 420])
def test_legend_never_covers_the_plot_area(qtbot, width: int) -> None:
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(width, 150)
    for step in range(50):
        plot.add(step, {"total": 2.0 - step / 30, "partial_ce": 1.5 - step / 40, "pseudo_ce": 1.0, "dice": 0.8,
                        "consistency": 0.1})
    fm = plot.fontMetrics()
    items, top = plot.legend_layout(fm, width)
    assert len(items) == 5
    assert all(y + fm.descent() < top for _, y, _, _ in items)  # every legend line lies above the axes
    assert all(x + 14 + fm.horizontalAdvance(label) <= width for x, _, label, _ in items)  # wrapped, not clipped
    assert top < 150 - 16 - 40  # and the curves keep most of the height
    image = plot.grab().toImage()  # paints without error at this size
    assert image.width() == width
