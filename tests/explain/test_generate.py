import json

import torch

from cfgen.data.inputs import open_input
from cfgen.explain.generate import generate_strips
from cfgen.explain.progressive import ProgressiveExaggeration
from tests.helpers import export_tiny_explainer


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
