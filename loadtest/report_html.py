"""A self-contained HTML page (inline SVG, no scripts) for a story report."""

from __future__ import annotations

import html
from typing import Any

COLORS = {"sync": "#c0392b", "positioned": "#2e86c1", "front-door": "#8e44ad",
          "pushed": "#27ae60"}


def _bars(report: dict[str, Any]) -> str:
    ways = [w for w in COLORS if report["ways"].get(w, {}).get("n")]
    stats = ("p50_ms", "p95_ms", "p99_ms")
    top = max((report["ways"][w][s] for w in ways for s in stats), default=1.0) or 1.0
    width, row, left = 720, 26, 110
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{len(ways) * len(stats) * row + 40}" font-family="sans-serif" font-size="13">']
    y = 10
    for way in ways:
        for stat in stats:
            value = report["ways"][way][stat]
            w = (width - left - 90) * value / top
            out.append(f'<text x="0" y="{y + 16}">{way} {stat[:3]}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 6}" '
                       f'fill="{COLORS[way]}"/>')
            out.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}">{value:.1f} ms</text>')
            y += row
        y += 4
    out.append("</svg>")
    return "".join(out)


def render_html(report: dict[str, Any], table: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>content-positioning story</title>"
        "<style>body{font-family:sans-serif;max-width:820px;margin:2em auto}"
        "pre{background:#f4f4f4;padding:1em;white-space:pre-wrap}</style></head><body>"
        "<h1>Time a user waits for a personal offer</h1>"
        f"{_bars(report)}<pre>{html.escape(table)}</pre>"
        "</body></html>"
    )
