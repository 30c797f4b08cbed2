"""Filters for the control room's templates: durations people read at a glance."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    """An age or a duration: "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def ms(value: float | None) -> str:
    """Milliseconds as a person reads them: "0.42 ms", "37 ms", "1.8 s"."""
    if value is None:
        return "—"
    if value >= 1000:
        return seconds(value / 1000)
    return f"{value:.2g} ms" if value < 10 else f"{value:.0f} ms"


@register.filter
def get(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, "")
