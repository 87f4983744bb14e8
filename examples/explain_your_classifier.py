"""Explain your own PyTorch classifier on your own image folder: train, strips, evaluate.

    python examples/explain_your_classifier.py --images faces/ --out runs/mine
    python examples/explain_your_classifier.py --quick --out /tmp/mine   # tiny: about a minute

Your images: a folder with an `attributes.csv` (a `file` column, a `split` column of train /
val / test, attribute columns; README.md, "Your own data"). The explainer reads the images
only; the classifier gives their posteriors. Your classifier: any nn.Module held in memory that
maps images (N, 3, H, W) in [-1, 1] to scores. `my_classifier` stands in for yours (a small CNN
trained here for a few hundred steps on the folder's `Smiling` column, a 2-class softmax):
replace it with your model and its weights, and set `OUTPUT` (the column of the class to
explain) and `ACTIVATION` (sigmoid, softmax or none) to how your model reads.

Writes <out>/explainer.pt (it records that its classifier was given in memory, with a
fingerprint of its weights; <out>/strips/ holds its training's monitor strips),
<out>/counterfactuals/ (per image: the image, then its frame at each
posterior bin, the classifier's posterior under each) and <out>/report/ (report.html,
results.json: the explainer beside a gradient saliency map on the test images).
"""

import argparse
from pathlib import Path

import torch
from torch import nn

import cfgen

OUTPUT, ACTIVATION = 1, "softmax"  # class 1 ("smiling") of a 2-class softmax


def my_classifier(folder: Path, size: int, steps: int) -> nn.Module:
    """Stand-in for your model: a small CNN trained on the folder's Smiling column. Yours:
    `model = YourNet(); model.load_state_dict(torch.load("weights.pt")); return model.eval()`."""
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip
    data = cfgen.AttributeDataModule(source="folder", root=str(folder), image_size=size)
    data.setup()
    images = torch.stack([item["image"] for item in data.train_dataset])
    column = data.attribute_names.index("Smiling")
    labels = torch.stack([item["labels"] for item in data.train_dataset])[:, column].long()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randint(len(images), (64,))
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def train_explainer(
    classifier: nn.Module, folder: Path, size: int, args
) -> cfgen.ProgressiveExaggeration:
    """The CPU configuration of configs/explainer/synthetic_smile.yaml, as typed options."""
    width = 8 if args.quick else 16
    module = cfgen.ExplainerModule(
        classifier,
        classifier_output=OUTPUT,
        classifier_activation=ACTIVATION,
        image_size=size,
        generator=cfgen.GeneratorOptions(
            width=width, max_width=8 * width, output="blend", edit_downsample=2
        ),
        discriminator=cfgen.DiscriminatorOptions(width=width, max_width=8 * width),
        weights=cfgen.LossWeights(cycle=10.0, identity=10.0, embedding=0.0, mask=0.1),
        optimisation=cfgen.Optimisation(n_critic=1),
        averaging=cfgen.Averaging(decay=0.995),
    )
    data = cfgen.ExplainerDataModule(
        source="folder", root=str(folder), image_size=size, batch_size=32, val_queries=64
    )
    return cfgen.fit_explainer(module, data, args.generator_steps, args.out)


def evaluate(explainer: cfgen.ProgressiveExaggeration, folder: Path, size: int, args) -> dict:
    """The explainer and a gradient map scored on the same test images; report.html."""
    data = cfgen.AttributeDataModule(source="folder", root=str(folder), image_size=size)
    data.setup()
    test = data.test_dataset
    queries = torch.stack([test[i]["image"] for i in range(min(args.n_queries, len(test)))])
    context = cfgen.EvalContext(explainer.classifier, queries, n_bins=explainer.n_bins)
    gradient = cfgen.build_explainer("gradient", explainer.classifier)
    config = cfgen.SuiteConfig(
        explainer=str(args.out / "explainer.pt"), out=str(args.out / "report"), overwrite=True,
        baselines=["gradient"], adversarial=[], map_metrics=["faithfulness"], logger="none",
    )  # fmt: skip
    inputs = cfgen.SuiteInputs(context, {"pe": explainer}, {"gradient": gradient})
    return cfgen.run_evaluation(config, inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="your attribute folder")
    parser.add_argument("--out", type=Path, default=Path("runs/your_classifier"))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--generator-steps", type=int, default=700)
    parser.add_argument("--n-queries", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="tiny sizes on generated faces")
    args = parser.parse_args()
    if args.quick:
        from _quick import quick_folder

        args.images, args.image_size = quick_folder(args.out), 16
        args.generator_steps, args.n_queries = 6, 8
    elif args.images is None:
        parser.error("give --images (your attribute folder) or --quick")
    size, steps = args.image_size, 40 if args.quick else 400
    classifier = my_classifier(args.images, size, steps)
    explainer = train_explainer(classifier, args.images, size, args)
    queries = cfgen.open_input(str(args.images), 0, size, 3)
    # Not args.out / "strips": training's monitor writes its step strips there.
    strips = args.out / "counterfactuals"
    written = cfgen.generate_strips(explainer, queries, strips, batch_size=64, overwrite=True)
    results = evaluate(explainer, args.images, size, args)
    shift = results["methods"]["pe"]["metrics"]["shift"]
    print(f"{written} strips in {strips}; report {results['paths']['html']}")
    print(f"PE: flip rate {shift['flip_rate']:.3f}, compat MAE {shift['compat_mae']:.3f}")


if __name__ == "__main__":
    main()
