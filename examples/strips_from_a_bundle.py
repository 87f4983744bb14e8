"""Load a trained explainer bundle and make strips: files, and tensors in your own code.

    python examples/strips_from_a_bundle.py --explainer runs/demo/explainer-*/explainer.pt \
        --images photos/ --out runs/strips
    python examples/strips_from_a_bundle.py --quick --out /tmp/strips   # tiny: about a minute

`from_checkpoint` loads the explainer with the classifier it was trained for, read as it was
then (its output and activation); pass `classifier=` for one held in memory. `--images` is a
folder of images (any size: they are resized to the explainer's) or an attribute folder. Writes
<out>/strips/ (as `cfgen generate` does: strips/<id>.png per image, overview.png,
strips.json), then prints the posteriors along the strip of the first image.
"""

import argparse
from pathlib import Path

import torch

import cfgen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explainer", type=Path, help="explainer.pt (or a training .ckpt)")
    parser.add_argument("--images", type=Path, help="an image folder or an attribute folder")
    parser.add_argument("--out", type=Path, default=Path("runs/strips"))
    parser.add_argument("--quick", action="store_true", help="tiny files, trained first")
    args = parser.parse_args()
    if args.quick:
        from _quick import quick_explainer

        args.explainer, args.images = quick_explainer(args.out / "work")
    elif args.explainer is None or args.images is None:
        parser.error("give --explainer and --images, or --quick")

    explainer = cfgen.ProgressiveExaggeration.from_checkpoint(args.explainer)
    size, channels = explainer.generator.image_size, explainer.generator.channels
    queries = cfgen.open_input(str(args.images), 0, size, channels)
    strips = args.out / "strips"
    written = cfgen.generate_strips(explainer, queries, strips, batch_size=64, overwrite=True)
    print(f"{written} strips written to {strips}")

    # The same in your own code: images (N, C, H, W) in [-1, 1] -> a strip of S frames.
    x = next(queries.batches(4)).images
    strip = explainer.exaggerate(x)  # images (S, N, C, H, W), posteriors (S, N)
    print(f"frames {tuple(strip.images.shape)}; posterior along the first strip:")
    print(" ".join(f"{p:.2f}" for p in strip.posteriors[:, 0].tolist()))
    smiling = explainer.counterfactual(x, torch.full((len(x),), 0.95))  # target: a posterior
    pairs = zip(explainer.classifier(x), explainer.classifier(smiling), strict=True)
    print("f(x) -> f(counterfactual at 0.95):", [f"{a:.2f} -> {b:.2f}" for a, b in pairs])


if __name__ == "__main__":
    main()
