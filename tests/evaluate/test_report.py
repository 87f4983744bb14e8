import base64
from html.parser import HTMLParser

import numpy as np
import pytest

from cfgen.evaluate.report import write_report
from cfgen.evaluate.tables import counterfactual_table, counterfactual_tables, map_table

VOID = {"meta", "img", "br", "hr", "link", "input"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class TagChecker(HTMLParser):
    """Collects images and table classes, and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack, self.images, self.tables, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "table":
            self.tables.append(attrs.get("class"))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def fake_results() -> tuple[dict, dict[str, np.ndarray]]:
    curve = {"target": [0.25, 0.75], "achieved_mean": [0.3, 0.7], "achieved_std": [0.05, 0.1]}
    results = {
        "n_queries": 3,
        "n_map_queries": 2,
        "methods": {
            "pe": {
                "kind": "counterfactual",
                "n_queries": 3,
                "metrics": {
                    "shift": {"flip_rate": 0.97, "compat_mae": 0.061, "monotonicity": 0.93}
                },
                "intervals": {"shift": {"flip_rate": [0.9, 1.0]}},
                "skipped": {"preservation": "LPIPS weights missing: place alexnet.pth"},
                "curve": curve,
            },
            "gradient": {
                "kind": "saliency",
                "n_queries": 2,
                "metrics": {"faithfulness": {"deletion_auc": 0.21}},
            },
        },
        "timing": {
            "pe": {"seconds": 1.5, "ms_per_query": 3.0},
            "gradient": {"seconds": 0.5, "ms_per_query": 1.0},
        },
        "bias": {
            "confounder": "glasses",
            "biased": {"curve": [0.0, 0.6], "drift": 0.61, "signed_change": 0.6},
            "unbiased": {"curve": [0.0, 0.05], "drift": 0.05, "signed_change": 0.0},
            "detected": True,
            "finding": "the biased classifier's strips add glasses: drift 0.61 vs 0.05",
        },
        "config": {"n_bins": 2},
        "versions": {"torch": "2.x", "cfgen": "0.1.0"},
    }
    rng = np.random.default_rng(0)
    images = {
        "queries": rng.uniform(-1, 1, (2, 3, 8, 8)),
        "query_posteriors": np.array([0.2, 0.8]),
        "strip/pe": rng.uniform(-1, 1, (2, 2, 3, 8, 8)),
        "posteriors/pe": np.array([[0.1, 0.2], [0.8, 0.9]]),
        "map/gradient": rng.uniform(0, 1, (2, 8, 8)),
    }
    return results, images


def test_headline_tables_have_a_row_per_method_and_dashes_for_missing():
    columns, rows = counterfactual_table(fake_results()[0])
    assert [row[0] for row in rows] == ["pe"]
    pe = dict(zip(columns, rows[0], strict=True))
    assert pe["flip"] == "0.97 [0.9, 1]" and pe["FID"] == "–" and pe["ms / query"] == "3"
    assert pe["n"] == "3" and pe["compat MAE"] == "0.061"  # no interval: none recorded
    columns, rows = counterfactual_table(fake_results()[0], intervals=False)
    assert dict(zip(columns, rows[0], strict=True))["flip"] == "0.97"
    # The report's two halves: the cause, then what is kept with the timing; every column once.
    cause, kept = counterfactual_tables(fake_results()[0]).values()
    assert cause[0][:2] == kept[0][:2] == ["method", "n"]
    assert cause[0][2:] + kept[0][2:] == columns[2:] and kept[0][-1] == "ms / query"
    assert cause[1][0][:3] == ["pe", "3", "0.97 [0.9, 1]"] and kept[1][0][-1] == "3"
    columns, rows = map_table(fake_results()[0])
    assert [row[0] for row in rows] == ["pe", "gradient"]
    gradient = dict(zip(columns, rows[1], strict=True))
    assert gradient["deletion AUC"] == "0.21" and gradient["kind"] == "saliency"
    # Every row of the map table states the queries it was scored on: the same for all.
    assert [row[columns.index("n")] for row in rows] == ["2", "2"]


def test_html_is_self_contained_balanced_and_holds_every_table(tmp_path):
    results, images = fake_results()
    paths = write_report(results, images, tmp_path)
    page = paths["html"].read_text()
    checker = TagChecker()
    checker.feed(page)
    assert checker.errors == [] and checker.stack == []
    assert checker.tables == [
        "counterfactuals",
        "what-the-counterfactuals-keep",
        "relevance-maps",
        "timing",
        "every-figure",
        "versions",
    ]
    # compatibility, PE strips, relevance maps (gradient and PE's own), bias plot
    assert len(checker.images) == 4
    for source in checker.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix) :]).startswith(PNG_SIGNATURE)
    assert "add glasses: drift 0.61 vs 0.05" in page
    assert "LPIPS weights missing" in page


@pytest.mark.parametrize("drop", ["bias", "strip"])
def test_report_without_optional_parts(tmp_path, drop):
    results, images = fake_results()
    if drop == "bias":
        del results["bias"]
    else:
        images = {k: v for k, v in images.items() if not k.startswith(("strip/", "posteriors/"))}
    paths = write_report(results, images, tmp_path)
    markdown = paths["markdown"].read_text()
    assert "| method | n | flip | compat MAE |" in markdown
    for name in ("compatibility.png", "maps.png"):
        assert (tmp_path / "figures" / name).is_file()
    assert ("Bias finding" in markdown) == (drop != "bias")
