"""The evaluation report: a Markdown file and a self-contained HTML page to share.

`write_report(results, images, out)` is a pure function of the suite's `results` dict and its
report images (see `suite.run_suite`): it writes `report.md` with its figures beside it in
`figures/`, and `report.html` with the same figures inlined as base64 PNG, all atomically.
"""

import base64
import html
import json
from pathlib import Path

import numpy as np

from cfgen import figures
from cfgen.evaluate.tables import (
    GLOSSARY,
    detail_table,
    headline_tables,
    skipped_groups,
    timing_table,
)
from cfgen.io import atomic_write_bytes, atomic_write_text


def _markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(columns: list[str], rows: list[list[str]], name: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    table = f'<table class="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def make_figures(results: dict, images: dict[str, np.ndarray]) -> dict[str, tuple[str, bytes]]:
    """Figure file name -> (caption, PNG bytes), in report order."""
    found: dict[str, tuple[str, bytes]] = {}
    curves = {n: e["curve"] for n, e in results["methods"].items() if "curve" in e}
    if curves:
        found["compatibility.png"] = (
            "Compatibility: target vs achieved posterior",
            figures.compatibility_plot(curves),
        )
    for name in _strip_methods(results, images):
        strip_png = figures.strip_figure(
            images[f"strip/{name}"],
            images[f"posteriors/{name}"],
            images["queries"],
            images["query_posteriors"],
            name,
            images.get(f"truth_for/{name}"),
            images.get(f"truth_gap/{name}"),
        )
        found[f"strip_{name}.png"] = (
            f"{name}: strips from target bin 0 to {len(images[f'strip/{name}']) - 1}, "
            "the classifier's posterior under each frame"
            + (
                "; under each row, the true counterfactual each frame is measured against and "
                "the frame's L1 distance to it"
                if f"truth_for/{name}" in images
                else ""
            ),
            strip_png,
        )
    far_ends = _far_ends(results, images)
    maps = {
        f"{name} |x - x_far|": np.abs(images["queries"] - far).sum(axis=1)
        for name, far in far_ends.items()
    }
    maps.update({k.split("/", 1)[1]: v for k, v in images.items() if k.startswith("map/")})
    if maps and len(images.get("queries", [])):
        found["maps.png"] = (
            "The same queries: each counterfactual method's far end x_far (the strip end "
            "opposite to the decision), its map |x - x_far|, and every saliency map",
            figures.maps_figure(images["queries"], far_ends, maps),
        )
    if "bias" in results:
        found["bias.png"] = (results["bias"]["finding"], figures.bias_plot(results["bias"]))
    return found


def _strip_methods(results: dict, images: dict[str, np.ndarray]) -> list[str]:
    """Methods with strips to show, in the results' order (PE first)."""
    return [name for name in results["methods"] if f"strip/{name}" in images]


def _far_ends(results: dict, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each counterfactual method's strip end opposite to the query's decision, (K, C, H, W)."""
    goes_up = (images.get("query_posteriors", np.zeros(0)) < 0.5)[:, None, None, None]
    return {
        name: np.where(goes_up, images[f"strip/{name}"][-1], images[f"strip/{name}"][0])
        for name in _strip_methods(results, images)
    }


def _tables(results: dict, part: str) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    """The report's tables before the figures (`part="top"`) and after them (`"appendix"`)."""
    if part == "top":
        return list(headline_tables(results).items())
    versions = results.get("versions", {})
    return [
        ("Timing", timing_table(results)),
        ("Every figure", detail_table(results)),
        ("Versions", (["package", "version"], [[k, v] for k, v in versions.items()])),
    ]


def _intro(results: dict) -> str:
    n, n_map = results.get("n_queries", "?"), results.get("n_map_queries", "?")
    reference = results.get("cout_reference") or "none"
    return (
        f"Every counterfactual method is scored on the same {n} held-out queries, every "
        f"relevance map on the same first {n_map}; brackets hold 95% bootstrap intervals over "
        f"the queries. pe: the frames as the generator draws them; pe_placed: each frame drawn "
        f"outside its bin placed by the explained classifier. truth: the true counterfactual "
        f"(the query re-rendered with only the explained factor moved), what a perfect method "
        f"scores. COUT inserts the far frames of: {reference}."
    )


LEGEND = " ".join(f"{name}: {meaning}." for name, meaning in GLOSSARY.items())


def _skipped_lines(results: dict) -> list[str]:
    return [
        f"{reason} ({', '.join(methods)})" for reason, methods in skipped_groups(results).items()
    ]


def render_markdown(results: dict, found: dict[str, tuple[str, bytes]]) -> str:
    """The report as Markdown, figures referenced from `figures/`."""
    parts = ["# cfgen evaluation report", ""]
    parts.append(_intro(results))
    if "bias" in results:
        parts += ["", f"**Bias finding:** {results['bias']['finding']}"]
    for title, (columns, rows) in _tables(results, "top"):
        parts += ["", f"## {title}", "", _markdown_table(columns, rows)]
        if title == "What the counterfactuals keep":
            parts += ["", LEGEND]
    skipped = _skipped_lines(results)
    if skipped:
        parts += ["", "## Skipped", "", *(f"- {line}" for line in skipped)]
    parts += ["", "## Figures"]
    parts += [
        f"\n### {caption}\n\n![{caption}](figures/{file})" for file, (caption, _) in found.items()
    ]
    for title, (columns, rows) in _tables(results, "appendix"):
        parts += ["", f"## {title}", "", _markdown_table(columns, rows)]
    parts += [
        "",
        "## Config",
        "",
        "```json",
        json.dumps(results.get("config", {}), indent=2),
        "```",
        "",
    ]
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1.5em 0; } img { max-width: 100%; } .finding { font-size: 1.1em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; } .scroll { overflow-x: auto; }
"""


def _html_tables(tables: list) -> list[str]:
    parts = []
    for title, (columns, rows) in tables:
        slug = title.lower().replace(" ", "-")
        parts += [f"<h2>{html.escape(title)}</h2>", _html_table(columns, rows, slug)]
        if title == "What the counterfactuals keep":
            parts.append(f'<p class="legend">{html.escape(LEGEND)}</p>')
    return parts


def render_html(results: dict, found: dict[str, tuple[str, bytes]]) -> str:
    """The report as one self-contained HTML page (figures inlined as base64 PNG)."""
    body = ["<h1>cfgen evaluation report</h1>"]
    body.append(f"<p>{html.escape(_intro(results))}</p>")
    if "bias" in results:
        body.append(
            f'<p class="finding"><b>Bias finding:</b> {html.escape(results["bias"]["finding"])}</p>'
        )
    body += _html_tables(_tables(results, "top"))
    skipped = _skipped_lines(results)
    if skipped:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in skipped)
        body += ["<h2>Skipped</h2>", f'<ul class="skipped">{items}</ul>']
    body.append("<h2>Figures</h2>")
    for caption, png in found.values():
        data = base64.b64encode(png).decode("ascii")
        body.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    body += _html_tables(_tables(results, "appendix"))
    config = html.escape(json.dumps(results.get("config", {}), indent=2))
    body += ["<h2>Config</h2>", f"<pre>{config}</pre>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>cfgen evaluation report</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_report(results: dict, images: dict[str, np.ndarray], out: str | Path) -> dict[str, Path]:
    """Write `report.md` (+ `figures/*.png`) and the self-contained `report.html` into `out`."""
    out = Path(out)
    found = make_figures(results, images)
    for file, (_, png) in found.items():
        atomic_write_bytes(out / "figures" / file, png)
    return {
        "markdown": atomic_write_text(out / "report.md", render_markdown(results, found)),
        "html": atomic_write_text(out / "report.html", render_html(results, found)),
    }
