"""Relevance maps of every method, saliency or counterfactual, on equal terms: the map table.

A saliency method gives a map (N, C, H, W); a counterfactual method's map is |x - x_far|. Each
group is a function `(context, SaliencyOutput) -> dict[str, float | Figure]` registered in
`MAP_SCORES`, and the suite runs the same groups on the same queries for every method:

- `faithfulness`: deletion / insertion AUC of the map, and COUT (Khorram & Fuxin, CVPR 2022):
  the pixels of a reference counterfactual inserted into the query in the map's order. The
  reference is never the scored method's own unless `counterfactual` is given: the suite passes
  the true counterfactual where the data can be re-rendered, else the far frames of the method
  the config names (`cout_reference`); a counterfactual method's COUT with its own far frames
  is `cout_own`, reported apart;
- `localisation`: relevance mass and pointing game in the explained factor's region;
- `robustness`: max-sensitivity, infidelity and the cascading randomisation check.
"""

from collections.abc import Callable

import torch

from cfgen.errors import CfgenError
from cfgen.evaluate import faithfulness, localisation, robustness
from cfgen.evaluate.context import EvalContext, Figure, SaliencyOutput
from cfgen.explain.base import resolve_target

Scores = dict[str, float | Figure]


@torch.no_grad()
def score_faithfulness(
    context: EvalContext, output: SaliencyOutput, counterfactual: torch.Tensor | None = None
) -> Scores:
    """Deletion / insertion AUC of the map; COUT inserting the reference counterfactual (and,
    given `counterfactual`, the method's own far frames as `cout_own`) in the map's order."""
    classifier, queries, maps = context.classifier, context.queries, output.maps
    scores: Scores = {
        "deletion_auc": Figure.mean(faithfulness.deletion_auc(classifier, queries, maps)),
        "insertion_auc": Figure.mean(faithfulness.insertion_auc(classifier, queries, maps)),
    }
    if context.reference_counterfactual is not None:
        reference = context.reference_counterfactual
        scores["cout"] = Figure.mean(faithfulness.cout(classifier, queries, reference, maps))
    if counterfactual is not None:
        own = faithfulness.cout(classifier, queries, counterfactual, maps)
        scores["cout_own"] = Figure.mean(own)
    return scores


def score_localisation(context: EvalContext, output: SaliencyOutput) -> Scores:
    """Relevance mass and pointing game of |map| (signs differ between methods) in the region."""
    return localisation.localisation_summary(output.maps.abs(), context.target_region_masks())


def score_robustness(context: EvalContext, output: SaliencyOutput) -> Scores:
    """Max-sensitivity, infidelity and the randomisation sanity check on the first
    `robustness_queries` queries (`robustness.py`).

    randomised_spearman_top / _all: rank correlation of |map| with the original after
    re-initialising the classifier's output layer / every layer; near 0 = the map follows the
    model, near 1 = it does not depend on what the model learnt.
    """
    queries = context.queries[: context.robustness_queries]
    target = resolve_target(context.classifier, queries, None)
    sensitivity = robustness.max_sensitivity(output.explain, queries, target)
    infidelity = robustness.infidelity(context.classifier, output.explain, queries, target)
    scores: Scores = {
        "max_sensitivity": sensitivity.mean().item(),
        "infidelity": infidelity.mean().item(),
    }
    factory = output.rebuild or output.name
    if factory is None or not isinstance(context.classifier, torch.nn.Module):
        return scores
    try:
        rows = robustness.cascading_randomisation(context.classifier, factory, queries, target)
    except CfgenError:  # a classifier without randomisable layers: the check does not apply
        return scores
    scores["randomised_spearman_top"] = rows[0]["spearman"]
    scores["randomised_spearman_all"] = rows[-1]["spearman"]
    return scores


MAP_SCORES: dict[str, Callable[[EvalContext, SaliencyOutput], Scores]] = {
    "faithfulness": score_faithfulness,
    "localisation": score_localisation,
    "robustness": score_robustness,
}
