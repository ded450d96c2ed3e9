"""Small SVG plots for Dagster metadata (no plotting dependency): insight histogram and ROC curve.

Dagster's asset pages render a Markdown metadata entry inline only when it is shorter than 1,000
characters; a longer one hides behind "[Show Markdown]". So each plot is a compact SVG (one path
per colour, a few labels, coordinates in a 200x100 box) in a percent-encoded ``data:`` URI, and
:func:`as_markdown_image` keeps the whole entry under :data:`INLINE_MARKDOWN_MAX` characters.
"""

import math
from collections.abc import Sequence

#: Dagster (1.x UI) shows a Markdown entry inline below this length.
INLINE_MARKDOWN_MAX = 1_000

#: Drawing box (SVG user units): 20 bins of 9 units between LEFT and RIGHT; the picture is shown SHOW_W wide.
BOX_W, BOX_H = 196, 100
SHOW_W = 420
LEFT, RIGHT, TOP, BOTTOM = 8, 188, 12, 88
BIN = 9

#: At most this many points of a ROC curve are drawn.
ROC_POINTS = 24

_URI_ESCAPES = {"%": "%25", "#": "%23", " ": "%20", "<": "%3C", ">": "%3E", '"': "%22", "(": "%28", ")": "%29"}


def _x(v: float) -> float:
    return LEFT + v * (RIGHT - LEFT)


def _y(v: float) -> float:
    return BOTTOM - v * (BOTTOM - TOP)


def _n(v: float) -> str:
    """A coordinate with at most one decimal, no trailing zeros."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _svg(body: str, title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{SHOW_W}' viewBox='0 0 {BOX_W} {BOX_H}' font-size='7' "
        f"font-family='sans-serif'>"
        f"<rect width='{BOX_W}' height='{BOX_H}' fill='white'/><text x='{LEFT}' y='8'>{title}</text>"
        f"<path d='M{LEFT},{TOP}V{BOTTOM}H{RIGHT}' fill='none' stroke='black'/>"
        f"<text x='{LEFT}' y='96'>0</text><text x='{RIGHT - 4}' y='96'>1</text>{body}</svg>"
    )


def insight_histogram_svg(edges: Sequence[float], counts: Sequence[int], threshold: float) -> str:
    """Pairs per insight bin (log-scaled heights: most pairs are normal); red at or above the threshold.

    Drawn for the 20 equal bins of ``scoring.insight_histogram``: one path per colour.
    """
    top = max((math.log1p(c) for c in counts), default=0.0) or 1.0
    paths: dict[str, str] = {}
    position: dict[str, int] = {}
    for index, (left, count) in enumerate(zip(edges[:-1], counts, strict=True)):
        if not count:
            continue
        colour = "crimson" if left >= threshold else "steelblue"
        x = LEFT + index * BIN
        height = round((BOTTOM - TOP) * math.log1p(count) / top) or 1
        move = f"M{x},{BOTTOM}" if colour not in paths else f"m{x - position[colour]},0"
        paths[colour] = paths.get(colour, "") + f"{move}v-{height}h{BIN - 1}v{height}"
        position[colour] = x + BIN - 1
    body = "".join(f"<path d='{d}' fill='{c}'/>" for c, d in paths.items())
    body += f"<path d='M{_n(_x(threshold))},{TOP}V{BOTTOM}' stroke='crimson' stroke-dasharray='2'/>"
    return _svg(body, f"insight of {sum(counts)} pairs (log scale), threshold {threshold:g}")


def _thin(fpr: Sequence[float], tpr: Sequence[float], points: int) -> list[tuple[float, float]]:
    pairs = list(zip(fpr, tpr, strict=True))
    if len(pairs) <= points:
        return pairs
    step = (len(pairs) - 1) / (points - 1)
    return [pairs[round(i * step)] for i in range(points)]


def roc_svg(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> str:
    """The validation ROC curve (held-out pairs vs random networks) with its AUC."""
    line = "L".join(f"{_n(_x(x))},{_n(_y(y))}" for x, y in _thin(fpr, tpr, ROC_POINTS))
    body = (
        f"<path d='M{_x(0)},{_y(0)}L{_x(1)},{_y(1)}' stroke='gray' stroke-dasharray='2'/>"
        f"<path d='M{line}' fill='none' stroke='steelblue' stroke-width='1.5'/>"
    )
    return _svg(body, f"validation ROC (false vs true positive rate), AUC {auc:.3f}")


def as_markdown_image(svg: str, alt: str) -> str:
    """Markdown that Dagster's metadata panel renders as a picture, inline when under 1,000 characters."""
    uri = "data:image/svg+xml," + "".join(_URI_ESCAPES.get(ch, ch) for ch in svg)
    return f"![{alt}]({uri})"
