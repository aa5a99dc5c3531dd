"""A tiny live loss plot drawn with QPainter: no matplotlib/pyqtgraph dependency for one line chart."""

from __future__ import annotations

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

_COLORS = ["#f0f0f0", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#46f0f0"]


class LossPlot(QWidget):
    """Plots each loss term against the step; keeps at most ``max_points`` per series (decimated)."""

    def __init__(self, parent: QWidget | None = None, max_points: int = 400) -> None:
        super().__init__(parent)
        self.max_points = max_points
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def add(self, step: int, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            if v is None or v != v:  # NaN
                continue
            pts = self.series.setdefault(k, [])
            pts.append((float(step), float(v)))
            if len(pts) > self.max_points:
                del pts[1::2]  # halve the resolution, keep the whole history's shape
        self.update()

    def legend_layout(self, fm, w: int, left: int = 34, right: int = 6) -> tuple[list, int]:
        """Legend entries ``(x, baseline_y, label, color)`` and the top of the plot area below them.

        The legend gets its own strip above the axes (wrapping to more lines if needed), so it never
        covers the curves, which start at the top left where a falling loss begins.
        """
        items, lx, ly = [], left, fm.ascent() + 2
        for i, name in enumerate(self.series):
            label = name.replace("_", " ")
            tw = 14 + fm.horizontalAdvance(label) + 10
            if lx + tw > w - right and lx > left:
                lx, ly = left, ly + fm.height()
            items.append((lx, ly, label, QColor(_COLORS[i % len(_COLORS)])))
            lx += tw
        return items, ly + fm.descent() + 6

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor("#262930"))
        pts_all = [pt for s in self.series.values() for pt in s]
        if not pts_all:
            p.setPen(QColor("#888888"))
            p.drawText(self.rect(), Qt.AlignCenter, "loss (appears while training)")
            p.end()
            return
        x0 = min(x for x, _ in pts_all)
        x1 = max(x for x, _ in pts_all)
        y1 = max(y for _, y in pts_all)
        y0 = min(0.0, min(y for _, y in pts_all))
        x1 = x1 if x1 > x0 else x0 + 1
        y1 = y1 if y1 > y0 else y0 + 1
        left, right, bottom = 34, 6, 16
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        fm = p.fontMetrics()
        items, top = self.legend_layout(fm, w, left, right)
        pw, ph = max(w - left - right, 1), max(h - top - bottom, 1)
        for lx, ly, label, color in items:
            p.setPen(QPen(color, 2.0))
            p.drawLine(QPointF(lx, ly - fm.ascent() / 2 + 1), QPointF(lx + 10, ly - fm.ascent() / 2 + 1))
            p.setPen(QColor("#cccccc"))
            p.drawText(lx + 14, ly, label)
        p.setPen(QColor("#555555"))
        p.drawRect(left, top, pw, ph)
        p.setPen(QColor("#888888"))
        p.drawText(2, top + fm.ascent(), f"{y1:.2g}")
        p.drawText(2, top + ph, f"{y0:.2g}")
        p.drawText(left, h - 2, f"step {int(x0)}")
        last = f"{int(x1)}"
        p.drawText(w - right - fm.horizontalAdvance(last), h - 2, last)
        for pts, (*_, color) in zip(self.series.values(), items):
            poly = QPolygonF(
                [QPointF(left + (x - x0) / (x1 - x0) * pw, top + (1 - (y - y0) / (y1 - y0)) * ph) for x, y in pts]
            )
            p.setPen(QPen(color, 1.5))
            p.drawPolyline(poly)
        p.end()
