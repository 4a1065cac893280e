"""Tiny inline-SVG bar charts for the dashboard: no JavaScript, no CDN, readable without CSS."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, BAR_HEIGHT, GAP, LABEL_WIDTH = 640, 22, 6, 220


def bar_chart(
    rows: list[tuple[str, float | None]], *, title: str, unit: str = "", reference: float | None = None
) -> SafeString:
    """Horizontal bars, one per (label, value); an optional dashed reference line (e.g. the
    seconds-per-mask hint). Rows without a value are listed with "–"."""
    if not rows:
        return mark_safe(f'<p class="muted">{escape(title)}: no data yet.</p>')
    values = [v for _, v in rows if v is not None]
    top = max([*values, reference or 0, 1e-9])
    plot = WIDTH - LABEL_WIDTH - 60
    height = len(rows) * (BAR_HEIGHT + GAP) + 30
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(rows):
        y = 24 + i * (BAR_HEIGHT + GAP)
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{escape(label[:32])}</text>"
        )
        if value is None:
            parts.append(f'<text x="{LABEL_WIDTH}" y="{y + 15}" font-size="12">–</text>')
            continue
        length = max(1.0, plot * value / top)
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" fill="#26a69a">'
            f"<title>{escape(label)}: {value:g}{unit}</title></rect>"
        )
        parts.append(
            f'<text x="{LABEL_WIDTH + length + 4:.1f}" y="{y + 15}" font-size="12">'
            f"{value:g}{escape(unit)}</text>"
        )
    if reference:
        x = LABEL_WIDTH + plot * reference / top
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="20" y2="{height}" stroke="#e53935" stroke-dasharray="4 3">'
            f"<title>hint: {reference:g}{unit}</title></line>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
