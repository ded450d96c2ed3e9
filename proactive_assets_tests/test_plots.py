"""The metadata plots render inline in Dagster's asset pages: compact, well-formed SVG images.

Dagster 1.13 renders a Markdown entry inline only under 1,000 characters (``MetadataEntry.tsx``:
``expandSmallValues && mdStr.length < 1000``), otherwise behind "[Show Markdown]";
``test_ui_browser.py`` checks the picture in a real browser.
"""

import urllib.parse
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from markdown_it import MarkdownIt

from proactive_assets.core.plots import INLINE_MARKDOWN_MAX, as_markdown_image, insight_histogram_svg, roc_svg

EDGES = [float(e) for e in np.linspace(0.0, 1.0, 21)]


def _svg_of(markdown: str) -> ET.Element:
    parser = MarkdownIt("commonmark")
    parser.validateLink = lambda url: True  # markdown-it refuses SVG data URIs; Dagster's renderer shows them
    html = parser.render(markdown)
    assert html.startswith('<p><img src="data:image/svg+xml,'), html[:80]
    uri = markdown[markdown.index("(data:") + 1 : -1]
    return ET.fromstring(urllib.parse.unquote(uri.removeprefix("data:image/svg+xml,")))


@pytest.mark.parametrize("threshold", [0.0, 0.123456789, 0.85, 1.0])
def test_histogram_is_inline_and_well_formed(threshold: float) -> None:
    counts = [5_000_000, *range(1, 20)]  # every bin filled, the worst case for size
    markdown = as_markdown_image(insight_histogram_svg(EDGES, counts, threshold), "insight distribution")
    assert len(markdown) < INLINE_MARKDOWN_MAX
    svg = _svg_of(markdown)
    paths = {p.get("fill"): p.get("d") for p in svg.iter("{http://www.w3.org/2000/svg}path") if p.get("d")}
    above = sum(1 for left in EDGES[:-1] if left >= threshold)
    assert paths.get("crimson", "").count("v-") == above
    assert paths.get("steelblue", "").count("v-") == 20 - above
    title = "".join(svg.itertext())
    assert f"insight of {sum(counts)} pairs" in title and f"threshold {threshold:g}" in title


def test_empty_bins_are_not_drawn() -> None:
    counts = [0] * 20
    counts[3], counts[19] = 7, 1
    svg = _svg_of(as_markdown_image(insight_histogram_svg(EDGES, counts, 0.9), "x"))
    d = {p.get("fill"): p.get("d") for p in svg.iter("{http://www.w3.org/2000/svg}path")}
    assert d["steelblue"].count("v-") == 1 and d["crimson"].count("v-") == 1


def test_roc_is_inline_whatever_the_number_of_points() -> None:
    fpr = np.linspace(0.0, 1.0, 50_000) ** 2
    tpr = np.sqrt(np.linspace(0.0, 1.0, 50_000))
    markdown = as_markdown_image(roc_svg(fpr, tpr, 0.9731), "validation ROC")
    assert len(markdown) < INLINE_MARKDOWN_MAX
    svg = _svg_of(markdown)
    assert "AUC 0.973" in "".join(svg.itertext())
    curve = [p.get("d") for p in svg.iter("{http://www.w3.org/2000/svg}path") if p.get("stroke") == "steelblue"]
    assert len(curve) == 1 and curve[0].count("L") == 23  # thinned to 24 points
