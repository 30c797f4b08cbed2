"""Charts drawn on the server as SVG: no JavaScript library, no CDN, and colours taken from
the admin's own CSS variables so that themes and dark mode apply to them too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ..rollups import Point

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 22  # room for the axis labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    css_class: str  # coloured by the stylesheet, from the admin's variables


THROUGHPUT = (
    Series("succeeded", "succeeded", "tm-ok"),
    Series("retried", "retried", "tm-retry"),
    Series("snoozed", "snoozed", "tm-snooze"),
    Series("failed", "failed", "tm-fail"),
    Series("cancelled", "cancelled", "tm-cancel"),
)


def stacked_bars(points: Sequence[Point], series: Sequence[Series] = THROUGHPUT) -> SafeString:
    """Attempts ended per bar, stacked by outcome."""
    top = _nice_max(max((point.total for point in points), default=0))
    width = PLOT_W / max(len(points), 1)
    parts = [_frame(top, points, unit="")]
    for index, point in enumerate(points):
        x = LEFT + index * width
        y = TOP + PLOT_H
        for item in series:
            value = point.counts.get(item.key, 0)
            if not value:
                continue
            height = PLOT_H * value / top
            y -= height
            label = f"{_when(point.start)}: {value} {item.label}"
            parts.append(
                f'<rect class="{item.css_class}" x="{x + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(width - 1, 0.5):.1f}" height="{height:.1f}">'
                f"<title>{escape(label)}</title></rect>"
            )
    return _svg(parts, "attempts ended")


def percentile_lines(
    points: Sequence[Point], value: Callable[[Point, float], float | None], what: str
) -> SafeString:
    """p50 and p95 of a histogram per bar, as two lines (a gap where nothing ended)."""
    values = {fraction: [value(point, fraction) for point in points] for fraction in (0.5, 0.95)}
    top = _nice_max(max((v for line in values.values() for v in line if v is not None), default=0))
    width = PLOT_W / max(len(points), 1)
    parts = [_frame(top, points, unit="ms")]
    for fraction, css_class in ((0.95, "tm-p95"), (0.5, "tm-p50")):
        for run in _runs(values[fraction]):
            coordinates = " ".join(
                f"{LEFT + (index + 0.5) * width:.1f},{TOP + PLOT_H * (1 - v / top):.1f}"
                for index, v in run
            )
            parts.append(f'<polyline class="{css_class}" points="{coordinates}"/>')
            for index, v in run:
                label = f"{_when(points[index].start)}: p{round(fraction * 100)} {_ms(v)}"
                parts.append(
                    f'<circle class="{css_class}" cx="{LEFT + (index + 0.5) * width:.1f}" '
                    f'cy="{TOP + PLOT_H * (1 - v / top):.1f}" r="2">'
                    f"<title>{escape(label)}</title></circle>"
                )
    return _svg(parts, what)


def _runs(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive non-empty values, so that a line is not drawn across a gap."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for index, v in enumerate(values):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((index, v))
    if current:
        runs.append(current)
    return runs


def _frame(top: float, points: Sequence[Point], unit: str) -> str:
    """Axes, a few grid lines with their values, and times under the first, middle and last
    bars."""
    parts = []
    for share in (0, 0.5, 1):
        y = TOP + PLOT_H * (1 - share)
        label = _ms(top * share) if unit == "ms" else f"{top * share:g}"
        parts.append(
            f'<line class="tm-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tm-axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    if points:
        width = PLOT_W / len(points)
        for index, anchor in ((0, "start"), (len(points) // 2, "middle"), (len(points) - 1, "end")):
            x = LEFT + index * width + (width if anchor == "end" else 0)
            parts.append(
                f'<text class="tm-axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(_when(points[index].start))}</text>"
            )
    return "".join(parts)


def _svg(parts: list[str], title: str) -> SafeString:
    body = "".join(parts)
    return mark_safe(  # every value interpolated above is a number or escaped
        f'<svg class="tm-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">{body}</svg>'
    )


def _nice_max(value: float) -> float:
    """A round number at least ``value`` for the top of an axis (1, 2 or 5 times 10^n)."""
    if value <= 0:
        return 1
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for factor in (1, 2, 5, 10):
        if magnitude * factor >= value:
            return magnitude * factor
    return magnitude * 10


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.3g} ms"


def _when(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%a %H:%M}"
