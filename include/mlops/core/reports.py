"""The pieces of the self-contained HTML reports (the gate's, monitoring's): PNG plots embedded as data URIs,
inline SVG charts, tables, the page. The reports themselves live with their stage (``evaluate.report``,
``monitor.report``)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG (the figure closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def png(fig) -> str:
    """A matplotlib figure as a PNG data URI, for an HTML report."""
    return data_uri(png_bytes(fig))


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "–" if v != v else f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr"
        + (' class="bad"' if r.get("regression") or r.get("passed") is False else "")
        + ">"
        + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def svg_chart(
    title: str,
    drifted: bool,
    series: list[tuple[str, str, list[tuple[float, float]]]],
    bars: tuple[list[str], list[float], list[float]] | None = None,
    w: int = 220,
    h: int = 150,
) -> str:
    """A small inline SVG chart: step-free polylines (x, y in [0, 1]) or paired bars. Cheap to draw daily."""
    pad, ph = 6, h - 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" style="margin:4px;border:1px solid #ddd">',
        f'<text x="{pad}" y="13" font-size="12" fill="{"#b00" if drifted else "#000"}">'
        f"{html.escape(title)}{' (drift)' if drifted else ''}</text>",
    ]
    if bars:
        labels, a, b = bars
        n = max(len(labels), 1)
        bw = (w - 2 * pad) / n / 2.4
        top = max(a + b + [1e-9])
        for i, (la, va, vb) in enumerate(zip(labels, a, b)):
            x = pad + i * (w - 2 * pad) / n
            for j, (v, colour) in enumerate(((va, "#1f77b4"), (vb, "#ff7f0e"))):
                bh = ph * v / top
                parts.append(
                    f'<rect x="{x + j * bw:.1f}" y="{20 + ph - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                    f'fill="{colour}"/>'
                )
            parts.append(f'<text x="{x:.1f}" y="{h - 4}" font-size="8">{html.escape(la[:4])}</text>')
    for _name, colour, pts in series:
        if pts:
            xy = " ".join(f"{pad + x * (w - 2 * pad):.1f},{20 + (1 - y) * ph:.1f}" for x, y in pts)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{xy}"/>')
    parts.append(
        f'<text x="{pad}" y="{h - 4}" font-size="9" fill="#1f77b4">reference</text>'
        f'<text x="{w - 50}" y="{h - 4}" font-size="9" fill="#ff7f0e">current</text>'
        if not bars
        else ""
    )
    return "".join(parts) + "</svg>"
