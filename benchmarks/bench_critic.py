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
from cfgen.models.discriminator import Discriminator


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
    critic = Discriminator(size, 3, explainer.n_bins, 16, 128)
    optimiser = torch.optim.Adam(critic.parameters(), 2e-4, betas=(0.0, 0.9))
    start = time.perf_counter()
    for _ in range(args.steps):
        pick = torch.randint(args.n, (32,))
        loss = get_loss("hinge_discriminator")(
            critic(real[pick], real_bins[pick]), critic(fake[pick], fake_bins[pick])
        )
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
        "seconds": time.perf_counter() - start,
        "auc_real_vs_frame": binary_auroc(scores, labels).item(),
        "frames_above_median_real": (fake_scores > real_scores.median()).float().mean().item(),
    }
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
