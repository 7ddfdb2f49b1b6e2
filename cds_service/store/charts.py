"""Plots as inline SVG and a page around them: no script, no font or style from any network.

Hospital networks are closed and a report is often opened from a file share: everything the
page needs is in the page. Used by the outcome report (``salivary-cds report --html``) and the
simulation report (``salivary-cds simulate``). Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

#: Colour-blind-safe series colours (Okabe-Ito).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#222;
max-width:72rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-size:.9rem}
td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0}figcaption{font-size:.9rem;color:#555}
svg text{font-family:inherit;font-size:12px;fill:#222}
.note{color:#555;font-size:.9rem}
"""


#: Characters of a bar's label drawn (the whole label is in its tooltip).
_LABEL_CHARS = 54


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(
    items: Sequence[tuple[str, float]], caption: str, unit: str = "", width: int = 860
) -> str:
    """Horizontal bars, one per (label, value), labelled with their value."""
    if not items:
        return f'<p class="note">{escape(caption)}: nothing to plot.</p>'
    row, label_w, top = 24, 400, 8
    plot_w = width - label_w - 90
    most = max(v for _, v in items) or 1.0
    height = top + row * len(items) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(caption)}">'
    ]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = max(0.0, plot_w * value / most)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(_short(label))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {_number(value)}{escape(unit)}</title>'
            f'</rect><text x="{label_w + w + 6:.1f}" y="{y + 16}">{_number(value)}'
            f"{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}<figcaption>{escape(caption)}</figcaption></figure>"


def line_chart(
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    caption: str,
    unit: str = "",
    y_max: float | None = None,
    width: int = 720,
    height: int = 260,
) -> str:
    """One line per series over ``x_labels`` (None: no point), with a legend."""
    values = [v for s in series.values() for v in s if v is not None]
    if not x_labels or not values:
        return f'<p class="note">{escape(caption)}: nothing to plot.</p>'
    left, right, top, bottom = 56, 32, 12, 40
    legend_h = 18 * len(series)
    plot_w, plot_h = width - left - right, height - top - bottom
    ceiling = y_max if y_max is not None else (max(values) or 1.0)
    step = plot_w / max(1, len(x_labels) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + plot_h - plot_h * min(v, ceiling) / ceiling

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + legend_h}" '
        f'role="img" aria-label="{escape(caption)}">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h - plot_h * fraction
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(ceiling * fraction)}{escape(unit)}</text>"
        )
    fits = max(2, int(plot_w // (7 * max(len(label) for label in x_labels) + 12)))
    every = -(-len(x_labels) // fits)  # ceiling: labels never overlap
    for i, label in enumerate(x_labels):
        if i % every == 0:
            x, _ = xy(i, 0)
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        segment: list[str] = []
        for i, v in enumerate(points):
            if v is None:
                if len(segment) > 1:
                    parts.append(_polyline(segment, colour))
                segment = []
                continue
            x, y = xy(i, v)
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>'
                f"{escape(name)} {escape(x_labels[i])}: {_number(v)}{escape(unit)}</title></circle>"
            )
        if len(segment) > 1:
            parts.append(_polyline(segment, colour))
        ly = height + 14 + 18 * n - 18
        parts.append(
            f'<rect x="{left}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + 18}" y="{ly + 1}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}<figcaption>{escape(caption)}</figcaption></figure>"


def _polyline(points: list[str], colour: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>'


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table; numbers are right-aligned."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    thead = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for cell in row:
            numeric = isinstance(cell, int | float) and not isinstance(cell, bool)
            text = _number(float(cell)) if isinstance(cell, int | float) else str(cell)
            klass = ' class="n"' if numeric else ""
            cells.append(f"<td{klass}>{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def page(title: str, sections: Sequence[tuple[str, str]], intro: str = "") -> str:
    """A whole HTML page: (heading, HTML body) sections; ``intro`` is plain text."""
    body = [f"<h1>{escape(title)}</h1>"]
    if intro:
        body.append(f'<p class="note">{escape(intro)}</p>')
    for heading, html in sections:
        body.append(f"<h2>{escape(heading)}</h2>{html}")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
