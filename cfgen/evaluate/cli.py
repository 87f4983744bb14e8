"""`cfgen evaluate --config configs/evaluate/synthetic_smile.yaml [--n_queries 100] [--out DIR]`.

The options are the fields of `SuiteConfig` (their defaults are the single source of truth);
YAML files only override them, dotted options (`--bias.biased_explainer PATH`) override the
YAML, and unknown keys fail. The resolved config is saved in `results.json`.
"""

import sys
from collections.abc import Sequence
from dataclasses import fields

from jsonargparse import ActionConfigFile, ArgumentParser

from cfgen.evaluate.suite import SuiteConfig, evaluate


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="cfgen evaluate",
        description="Score the PE explainer, the adversarial counterfactuals and every saliency "
        "baseline on the same held-out queries; write results.json and an HTML report.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of options")
    parser.add_class_arguments(SuiteConfig, None)
    return parser


def parse_config(argv: Sequence[str]) -> SuiteConfig:
    """The `SuiteConfig` that `argv` (config files and options) describes."""
    parser = build_parser()
    namespace = parser.instantiate(parser.parse_args(list(argv)))
    return SuiteConfig(**{f.name: namespace[f.name] for f in fields(SuiteConfig)})


def _print_summary(results: dict) -> None:
    from cfgen.evaluate.tables import counterfactual_tables, skipped_groups

    for columns, rows in counterfactual_tables(results, intervals=False).values():
        widths = [max(len(str(c)) for c in column) for column in zip(columns, *rows, strict=True)]
        for row in [columns, *rows]:
            print("  ".join(f"{cell:>{width}}" for cell, width in zip(row, widths, strict=True)))
        print()
    for reason, methods in skipped_groups(results).items():
        print(f"skipped {reason} ({', '.join(methods)})")
    if "bias" in results:
        print(f"bias: {results['bias']['finding']}")
    print(f"results: {results['paths']['results']}\nreport:  {results['paths']['html']}")
    if results.get("wandb_sync"):
        print(f"W&B run saved offline; upload it with: {results['wandb_sync']}")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    results = evaluate(config)
    _print_summary(results)
    return 0
