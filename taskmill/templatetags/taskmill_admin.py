"""Filters and tags for the control room's templates: durations people read at a glance,
breadcrumbs in the admin's own markup."""

from __future__ import annotations

from typing import Any

import django
from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

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


# Django 6.1 writes the admin's breadcrumbs as a list, styled as ``ol.breadcrumbs``; 6.0 and
# 5.2 as a ``div.breadcrumbs`` of links. A page in the other form sits unstyled at its edge.
BREADCRUMBS_AS_LIST = django.VERSION >= (6, 1)


@register.simple_tag
def breadcrumbs(*trail: str) -> SafeString:
    """The admin's breadcrumbs in this Django's own markup: ``label, url`` pairs, then the
    current page's label: ``{% breadcrumbs "Home" home_url "Dashboard" %}``."""
    *links, here = trail
    pairs = list(zip(links[::2], links[1::2], strict=True))
    if BREADCRUMBS_AS_LIST:
        return format_html(
            # One item a line, as Django writes them: the space between them is the gap
            # around the separator its stylesheet adds.
            '<ol class="breadcrumbs">\n{}<li aria-current="page">{}</li>\n</ol>',
            format_html_join("", '<li><a href="{}">{}</a></li>\n', ((u, t) for t, u in pairs)),
            here,
        )
    return format_html(
        '<div class="breadcrumbs">{}{}</div>',
        format_html_join("", '<a href="{}">{}</a> &rsaquo; ', ((u, t) for t, u in pairs)),
        here,
    )
