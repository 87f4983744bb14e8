"""Can the explainer's critic tell real faces from an explainer's frames, trained on that alone?

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_critic.py \
        --explainer runs/demo/explainer-*/explainer.pt --steps 300

The discriminator of the CPU config (`cfgen.models.discriminator.Discriminator`, width 16 -> 128,
the projection head on each image's bin) is trained from scratch with the hinge loss for
`--steps` batches of 32 on one task only: real validation faces (in their own bin) against the
explainer's frames (in their target bin), drawn from other validation faces. It is then asked
on held-out faces and frames (the test split): AUC of real vs frame, and the share of frames it
scores as more real than the median real face. A critic that separates them at once says the
explainer's artefacts are visible to a network of this size; that they survive GAN training
says the critic does not get to learn them there (one step per generator step, a moving target).

    ... --patch_size 9 --negatives cutmix --steps 300

`--patch_size` trains the patch critic instead (`cfgen.models.discriminator.PatchCritic`, every
9x9 window, unconditional; an image's score is that of its least real window), and `--negatives
cutmix` trains either critic against real faces with a small box pasted from another face
(`cfgen.train.augment.cutmix_negatives`) instead of the explainer's frames: can a critic that has
never seen a frame tell the frames from real faces?
"""

import argparse
import json
import time
from pathlib import Path

import torch
from torchmetrics.functional.classification import binary_auroc

from cfgen.bins import posterior_to_bin
from cfgen.data.synthetic import SyntheticFaces
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.losses import get_loss
from cfgen.models.discriminator import Discriminator, PatchCritic
from cfgen.train.augment import cutmix_negatives


def frames(explainer: ProgressiveExaggeration, faces: torch.Tensor, seed: int):
    """One frame per face at a random bin: images (N, C, H, W) and their target bins (N,)."""
    bins = torch.randint(
        explainer.n_bins, (len(faces),), generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        images = torch.cat(
            [
                explainer.generator(faces[i : i + 256], bins[i : i + 256])
                for i in range(0, len(faces), 256)
            ]
        )
    return images, bins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explainer", required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_critic.json"))
    parser.add_argument("--patch_size", type=int, default=0, help="0: the projection D")
    parser.add_argument("--negatives", choices=["frames", "cutmix"], default="frames")
    args = parser.parse_args()
    torch.manual_seed(0)
    explainer = ProgressiveExaggeration.from_checkpoint(args.explainer, placement_steps=0)
    classifier, size = explainer.classifier, explainer.generator.image_size
    train = SyntheticFaces(2 * args.n, size, seed=0, split="val").images
    test = SyntheticFaces(1000, size, seed=0, split="test").images
    real, source = train[: args.n], train[args.n :]
    with torch.no_grad():
        real_bins = posterior_to_bin(classifier(real), explainer.n_bins)
        test_bins = posterior_to_bin(classifier(test[:500]), explainer.n_bins)
    fake, fake_bins = frames(explainer, source, seed=1)
    test_fake, test_fake_bins = frames(explainer, test[500:], seed=2)
    if args.patch_size:
        patch = PatchCritic(3, 16, args.patch_size)

        def critic(images: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
            return patch(images).flatten(1).amin(dim=1)  # its least real window

        parameters = patch.parameters()
    else:
        critic = Discriminator(size, 3, explainer.n_bins, 16, 128)
        parameters = critic.parameters()
    optimiser = torch.optim.Adam(parameters, 2e-4, betas=(0.0, 0.9))
    hinge = get_loss("hinge_discriminator")
    start = time.perf_counter()
    for _ in range(args.steps):
        pick = torch.randint(args.n, (32,))
        if args.negatives == "frames":
            loss = hinge(critic(real[pick], real_bins[pick]), critic(fake[pick], fake_bins[pick]))
        elif args.patch_size:  # every window of the real faces, the windows on the pasted box
            negatives, windows = cutmix_negatives(real[pick], (args.patch_size - 1) // 2)
            loss = torch.relu(1 - patch(real[pick])).mean() + get_loss("hinge_fake_windows")(
                patch(negatives), windows
            )
        else:
            negatives, _ = cutmix_negatives(real[pick], 0)
            loss = hinge(critic(real[pick], real_bins[pick]), critic(negatives, real_bins[pick]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        real_scores = critic(test[:500], test_bins).flatten()
        fake_scores = critic(test_fake, test_fake_bins).flatten()
    scores = torch.cat([real_scores, fake_scores])
    labels = torch.cat([torch.ones(500), torch.zeros(500)]).long()
    result = {
        "explainer": args.explainer,
        "steps": args.steps,
        "patch_size": args.patch_size,
        "negatives": args.negatives,
        "seconds": time.perf_counter() - start,
        "auc_real_vs_frame": binary_auroc(scores, labels).item(),
        "frames_above_median_real": (fake_scores > real_scores.median()).float().mean().item(),
    }
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
