"""Small SVG plots for Dagster metadata (no plotting dependency): insight histogram and ROC curve.

Dagster renders Markdown metadata; an ``<img>`` with an SVG data URI shows as a picture in the
asset's materialisation panel, so a person can see the day's distribution and the model's ROC.
"""

import base64
from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 420, 240, 36


def _frame(title: str, x_label: str, y_label: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>'
        f'<text x="{WIDTH / 2}" y="14" text-anchor="middle" font-weight="bold">{title}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" stroke="black"/>'
        f'<line x1="{PAD}" y1="20" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="black"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{x_label}</text>'
        f'<text x="10" y="{HEIGHT / 2}" transform="rotate(-90 10 {HEIGHT / 2})" text-anchor="middle">{y_label}</text>'
        f"{body}</svg>"
    )


def _x(v: float) -> float:
    return PAD + v * (WIDTH - 10 - PAD)


def _y(v: float) -> float:
    return HEIGHT - PAD - v * (HEIGHT - PAD - 20)


def insight_histogram_svg(edges: Sequence[float], counts: Sequence[int], threshold: float) -> str:
    """Pairs per insight bin (log-scaled heights, since most pairs are normal) with the threshold."""
    import math

    top = max((math.log1p(c) for c in counts), default=0.0) or 1.0
    bars = []
    for left, right, count in zip(edges[:-1], edges[1:], counts, strict=True):
        height = math.log1p(count) / top
        color = "#d62728" if left >= threshold else "#1f77b4"
        bars.append(
            f'<rect x="{_x(left) + 1:.1f}" y="{_y(height):.1f}" width="{_x(right) - _x(left) - 2:.1f}" '
            f'height="{_y(0) - _y(height):.1f}" fill="{color}"><title>{left:.2f}-{right:.2f}: {count}</title></rect>'
        )
    line = (
        f'<line x1="{_x(threshold):.1f}" y1="20" x2="{_x(threshold):.1f}" y2="{HEIGHT - PAD}" stroke="#d62728" '
        f'stroke-dasharray="4 3"/><text x="{_x(threshold) - 4:.1f}" y="30" text-anchor="end" fill="#d62728">'
        f"threshold {threshold:g}</text>"
    )
    ticks = "".join(
        f'<text x="{_x(t):.1f}" y="{HEIGHT - PAD + 13}" text-anchor="middle">{t:g}</text>' for t in (0, 0.5, 1)
    )
    total = sum(counts)
    return _frame(
        f"insight of {total} pairs (log count)",
        "insight (higher = more suspicious)",
        "pairs",
        "".join(bars) + line + ticks,
    )


def roc_svg(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> str:
    """The validation ROC curve (held-out pairs vs random networks) with its AUC."""
    points = " ".join(f"{_x(x):.1f},{_y(y):.1f}" for x, y in zip(fpr, tpr, strict=True))
    body = (
        f'<line x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}" stroke="#999" stroke-dasharray="3 3"/>'
        f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
        f'<text x="{_x(0.6):.1f}" y="{_y(0.2):.1f}">AUC {auc:.3f}</text>'
    )
    return _frame("validation ROC", "false positive rate", "true positive rate", body)


def as_markdown_image(svg: str, alt: str) -> str:
    """Markdown that Dagster's metadata panel renders as a picture."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"
