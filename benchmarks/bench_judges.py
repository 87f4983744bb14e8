"""Which judges tell a counterfactual from an attack: candidate judges on reference strips.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_judges.py \
        --classifier runs/demo/classifier-*/classifier.pt \
        --explainer runs/demo/explainer-*/explainer.pt \
        --judges plain=runs/demo/judge-*/classifier.pt robust_0.03=runs/robust/r0.03/classifier.pt

A judge is chosen on what it should do whatever explainer it later judges, on the validation
split (never the test split the evaluation reports on): read real images right (AUC), follow
the true counterfactual (flip rate of re-rendered strips, the query with only the smile moved:
high), and not follow an attack on the explained classifier (flip rate of PGD's strips: low).
PE's strips (as drawn) are scored too, for information only: a judge is never chosen on them.
The nearest-neighbour judge (pixels, k = 15, 5,000 training faces) is scored beside every
learned judge. Prints one row per judge and writes `--out` (JSON).
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from torchmetrics.functional.classification import binary_auroc

from cfgen.evaluate.build import build_context, data_module, posteriors
from cfgen.evaluate.loading import SuiteConfig
from cfgen.evaluate.methods import score_counterfactual, truth_strip
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.registry import build_explainer
from cfgen.models.blackbox import classifier_facts, load_blackbox

GROUPS = ["shift", "judge"]


def parse_judges(items: list[str]) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in items]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit("--judges takes NAME=PATH pairs")
    return dict(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--explainer", required=True)
    parser.add_argument("--judges", nargs="+", required=True, help="NAME=PATH of each judge")
    parser.add_argument("--n_queries", type=int, default=300)
    parser.add_argument("--n_pgd", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_judges.json"))
    args = parser.parse_args()
    config = SuiteConfig(explainer=args.explainer, split="val", n_queries=args.n_queries,
                         n_real=0, logger="none")  # fmt: skip
    size = classifier_facts(args.classifier)["image_size"]
    module = data_module(config, args.classifier, size)
    classifier = load_blackbox(args.classifier)
    base = build_context(config, classifier, module)
    real = module.val_dataset
    labels = real.labels[: args.n_queries, module.target_index].long()
    explainer = ProgressiveExaggeration.from_checkpoint(args.explainer, placement_steps=0)
    strips = {
        "truth": truth_strip(base),
        "pgd": score_counterfactual(
            build_explainer("pgd", classifier), base.head(args.n_pgd), ["shift"]
        )[1],
        "pe": score_counterfactual(explainer, base, ["shift"])[1],
    }
    judges = {name: load_blackbox(path) for name, path in parse_judges(args.judges).items()}
    judges["knn_pixels"] = base.neighbours
    rows = {}
    for name, judge in judges.items():
        auc = binary_auroc(posteriors(judge, base.queries, 256), labels).item()
        row = {"val_auc": auc}
        for method, strip in strips.items():
            context = replace(base.head(strip.num_queries), judge=judge)
            entry, _ = score_counterfactual(None, context, GROUPS, strip=strip)
            row[f"{method}_flip"] = entry["metrics"]["judge"]["judge_flip_rate"]
        rows[name] = row
        print(name, {key: round(value, 3) for key, value in row.items()}, flush=True)
    args.out.write_text(json.dumps({"command": vars(args) | {"out": str(args.out)}, "rows": rows},
                                   indent=1, default=str))  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
