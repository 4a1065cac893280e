"""Inline-SVG line charts for training (loss curves): no JavaScript, no CDN, like the dashboard's
bar charts."""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 56, 28, 24
COLORS = ("#26a69a", "#5c6bc0", "#ef6c00", "#8d6e63", "#d81b60", "#7cb342")


def line_chart(
    series: Sequence[tuple[str, Sequence[Sequence[float | None]]]], *, title: str, y_label: str = ""
) -> SafeString:
    """One polyline per (name, [[x, y], ...]); points with a missing or non-finite y are left out."""
    clean = [
        (name, [(float(x), float(y)) for x, y in points if _finite(x) and _finite(y)])
        for name, points in series
    ]
    clean = [(name, pts) for name, pts in clean if pts]
    if not clean:
        return mark_safe(f'<p class="muted">{escape(title)}: no data yet.</p>')
    xs = [x for _, pts in clean for x, _ in pts]
    ys = [y for _, pts in clean for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - (y - y0) / (y1 - y0))

    parts = [
        f'<svg role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" font-size="11" text-anchor="end">{y1:.3g}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" font-size="11" text-anchor="end">{y0:.3g}</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11">{x0:g}</text>',
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{x1:g} steps</text>',
    ]
    if y_label:
        parts.append(
            f'<text x="{LEFT + 6}" y="{TOP + 10}" font-size="11" fill="#666">{escape(y_label)}</text>'
        )
    for i, (name, pts) in enumerate(clean):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}">'
            f"<title>{escape(name)}: last {pts[-1][1]:.4g}</title></polyline>"
        )
        parts.append(
            f'<text x="{LEFT + plot_w - 4}" y="{TOP + 14 + 14 * i}" font-size="11" text-anchor="end" '
            f'fill="{color}">{escape(name[:40])}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
