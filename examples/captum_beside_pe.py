"""Score captum saliency methods beside Progressive Exaggeration, on the same images.

    python examples/captum_beside_pe.py --explainer runs/demo/explainer-*/explainer.pt \
        --images faces/ --out runs/captum_vs_pe
    python examples/captum_beside_pe.py --quick --out /tmp/captum   # tiny: about a minute

Every saliency method of captum that cfgen wraps (`cfgen.EXPLAINERS`: gradient, smoothgrad,
integrated_gradients, guided_backprop, gradcam, occlusion, lime, kernelshap) is built by name
with the black box PE explains and scored by the evaluation suite on the same test images as
PE's |x - x_far| maps: deletion and insertion AUC (lower / higher is better), and COUT, which
inserts PE's counterfactual pixels in each map's order. `--images` is the attribute folder the
explainer was trained on (its test split is scored); the synthetic world's region metrics need
its factors and are skipped on a folder. Writes <out>/report.html and results.json.
"""

import argparse
from pathlib import Path

import cfgen

METHODS = ["integrated_gradients", "gradcam", "occlusion"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explainer", type=Path, help="explainer.pt of a cfgen training")
    parser.add_argument("--images", type=Path, help="the attribute folder it was trained on")
    parser.add_argument("--out", type=Path, default=Path("runs/captum_vs_pe"))
    parser.add_argument("--n-queries", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny files, trained first")
    args = parser.parse_args()
    if args.quick:
        from _quick import quick_explainer

        args.explainer, args.images = quick_explainer(args.out / "work")
        args.n_queries = 8
    elif args.explainer is None or args.images is None:
        parser.error("give --explainer and --images, or --quick")

    # One call: the explainer's recorded classifier, its test images, every method by name.
    config = cfgen.SuiteConfig(
        explainer=str(args.explainer),
        data=cfgen.EvalData(source="folder", root=str(args.images)),
        baselines=METHODS,
        adversarial=[],
        counterfactual_metrics=["shift"],
        map_metrics=["faithfulness"],
        n_queries=args.n_queries,
        n_real=16,
        out=str(args.out / "report"),
        overwrite=True,
        logger="none",
    )
    results = cfgen.run_evaluation(config)
    print(f"{'method':<22} {'deletion AUC':>13} {'insertion AUC':>14} {'COUT':>6}")
    for name, entry in results["methods"].items():
        scores = entry["metrics"]["faithfulness"]
        row = [scores["deletion_auc"], scores["insertion_auc"], scores.get("cout", float("nan"))]
        print(f"{name:<22} {row[0]:13.3f} {row[1]:14.3f} {row[2]:6.3f}")
    print(f"report: {results['paths']['html']}")

    # The same maps in your own code: any method by name, with the black box PE explains.
    explainer = cfgen.ProgressiveExaggeration.from_checkpoint(args.explainer)
    size = explainer.generator.image_size
    x = next(cfgen.open_input(str(args.images), 0, size, 3).batches(4)).images
    integrated = cfgen.build_explainer("integrated_gradients", explainer.classifier)
    maps = {"integrated_gradients": integrated.explain(x), "pe": explainer.explain(x)}
    print({name: tuple(m.shape) for name, m in maps.items()})  # both shaped like x


if __name__ == "__main__":
    main()
