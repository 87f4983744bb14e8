import io
import json

import numpy as np
import torch
from PIL import Image

from cfgen.data.inputs import open_input
from cfgen.explain.generate import OVERVIEW_QUERIES, Overview, generate_strips
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip import Strip
from tests.helpers import export_tiny_explainer


def white_runs(rows_blank: np.ndarray) -> list[tuple[bool, int]]:
    """Run lengths of blank / non-blank rows, top to bottom."""
    runs: list[tuple[bool, int]] = []
    for blank in rows_blank.tolist():
        if runs and runs[-1][0] == blank:
            runs[-1] = (blank, runs[-1][1] + 1)
        else:
            runs.append((blank, 1))
    return runs


def test_overview_has_no_empty_band_between_its_title_and_first_row():
    overview = Overview()
    for _ in range(3):  # batches of 8: the overview keeps the first 16 queries
        queries = torch.rand(8, 3, 8, 8) * 2 - 1
        strip = Strip(torch.rand(10, 8, 3, 8, 8) * 2 - 1, torch.arange(10), torch.rand(10, 8),
                      torch.rand(8))  # fmt: skip
        overview.add(queries, strip)
    assert overview.full and sum(len(q) for q in overview.queries) == OVERVIEW_QUERIES
    picture = np.array(Image.open(io.BytesIO(overview.png())).convert("L"))
    runs = white_runs((picture > 250).all(axis=1))[1:]  # after the margin of the picture
    # title, blank gap, first row of frames: the gap is under 0.3 inch (figures are 110 dpi)
    (title_blank, _), (gap_blank, gap), (row_blank, _) = runs[:3]
    assert (title_blank, gap_blank, row_blank) == (False, True, False)
    assert gap < 0.3 * 110, f"{gap} blank pixel rows under the title"


def test_generate_strips_from_python_matches_the_explainer(tmp_path):
    checkpoint = export_tiny_explainer(tmp_path, size=16)[0]
    explainer = ProgressiveExaggeration.from_checkpoint(checkpoint)
    queries = open_input("synthetic:test", 5, 16)
    out = tmp_path / "out"
    assert generate_strips(explainer, queries, out, batch_size=2, checkpoint="x.pt") == 5
    document = json.loads((out / "strips.json").read_text())
    assert document["checkpoint"] == "x.pt"
    assert [r["id"] for r in document["queries"]] == queries.ids
    images = torch.cat([batch.images for batch in queries.batches(5)])
    strip = explainer.exaggerate(images)
    achieved = torch.tensor([r["posteriors"] for r in document["queries"]]).T
    torch.testing.assert_close(achieved, strip.posteriors)
    query_posteriors = torch.tensor([r["query_posterior"] for r in document["queries"]])
    torch.testing.assert_close(query_posteriors, strip.query_posteriors)
    assert sorted(p.name for p in (out / "strips").iterdir()) == [f"{i}.png" for i in queries.ids]
    assert (out / "overview.png").is_file()
