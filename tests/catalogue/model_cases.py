"""Catalogue cases of models: the classifier to explain, and checkpoints and model files."""

from collections.abc import Callable
from pathlib import Path

import torch

from cfgen.cli import main
from cfgen.explain.latent_shift import LatentShift
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.models.blackbox import BlackBox, load_blackbox
from tests.catalogue.workspace import (
    Case,
    Workspace,
    autoencoder_file,
    explainer_fit,
    fit,
    generate,
)
from tests.helpers import ChannelMeanLogit, write_two_class_torchscript
from tests.model_files import (
    IMAGE_SIZE,
    write_classifier_bundle,
    write_crafted_export,
    write_crafted_pickle,
)


def box(model: torch.nn.Module, output: str = "logits") -> BlackBox:
    return BlackBox(model, target_index=0, output=output, activation="sigmoid")


class Returns(torch.nn.Module):
    """A classifier returning `make(x)`: stands for a model that misbehaves."""

    def __init__(self, make: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.make = make

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.make(x)


def truncated(ws: Workspace) -> Path:
    path = ws.root / "truncated.pt"
    path.write_bytes(ws.classifier.read_bytes()[:1000])
    return path


def empty_file(ws: Workspace) -> Path:
    path = ws.root / "empty.pt"
    path.write_bytes(b"")
    return path


def latent_shift_of(ws: Workspace, classifier: Callable[[torch.Tensor], torch.Tensor]) -> object:
    images = torch.linspace(-1, 1, 2 * 3 * IMAGE_SIZE**2).view(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    return LatentShift(classifier, autoencoder_file(ws, IMAGE_SIZE)).exaggerate(images)


def text_file(ws: Workspace) -> Path:
    path = ws.root / "notes.pt"
    path.write_text("not a model\n")
    return path


def explainer_run(ws: Workspace, width: int, *extra) -> list:
    """`cfgen explainer fit` of one step into a run folder of its own, generator `width` wide."""
    return [
        "explainer", "fit", "--model.classifier", ws.classifier, "--logger", "none",
        "--trainer.default_root_dir", ws.root / "explainer_run", "--trainer.max_steps", "1",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--data.n_train", "8", "--data.n_val", "8", "--data.n_test", "8",
        "--data.batch_size", "4", "--data.steps_per_epoch", "1", "--model.n_bins", "4",
        "--model.generator.width", str(width), "--model.generator.max_width", "16",
        "--model.discriminator.width", "8", "--model.discriminator.max_width", "16",
        "--monitor.n_queries", "4", *extra,
    ]  # fmt: skip


def resumed_with_another_width(ws: Workspace) -> list:
    """An explainer run trained with width 8, resumed with width 4."""
    assert main([str(arg) for arg in explainer_run(ws, 8)]) == 0
    return explainer_run(ws, 4, "--trainer.max_steps", "2", "--ckpt_path", "last")


def resumed_from_the_file_with_another_width(ws: Workspace) -> list:
    """An explainer run trained with width 8, resumed from its checkpoint's path with width 4."""
    assert main([str(arg) for arg in explainer_run(ws, 8)]) == 0
    last = ws.root / "explainer_run" / "checkpoints" / "last.ckpt"
    return explainer_run(ws, 4, "--trainer.max_steps", "2", "--ckpt_path", last)


def explainer_of_a_classifier_of_one_answer(ws: Workspace) -> list:
    """An explainer trained against a TorchScript classifier that reads every image 0.047."""
    constant = ws.root / "constant.ts"
    torch.jit.script(ChannelMeanLogit(scale=0.0, bias=-3.0)).save(str(constant))
    return explainer_run(ws, 8, "--model.classifier", constant)


def classifier_resumed_from_an_explainer(ws: Workspace) -> list:
    """`cfgen classifier fit --ckpt_path` of an explainer run's checkpoint."""
    assert main([str(arg) for arg in explainer_run(ws, 8)]) == 0
    last = ws.root / "explainer_run" / "checkpoints" / "last.ckpt"
    return fit(ws, "--trainer.default_root_dir", ws.root / "classifier_run", "--ckpt_path", last)


def evaluate_other_classifier(ws: Workspace) -> list:
    """`cfgen evaluate` of the workspace's explainer with another classifier."""
    other = write_classifier_bundle(ws.root / "other.pt", seed=1)
    return ["evaluate", "--explainer", ws.explainer, "--classifier", other, "--out",
            ws.root / "eval", "--baselines", "[]", "--adversarial", "[]", "--n_queries", "2",
            "--n_real", "0", "--logger", "none"]  # fmt: skip


MODEL_CASES = [
    # classifier
    Case("classifier-logits-declared-probabilities",
         call=lambda ws: box(Returns(lambda x: x.mean((1, 2, 3))[:, None] * 5), "probabilities")(
             torch.linspace(-1, 1, 2 * 768).view(2, 3, 16, 16))),
    Case("classifier-nan-output",
         call=lambda ws: box(Returns(lambda x: torch.full((len(x), 1), float("nan"))))(
             torch.zeros(2, 3, 16, 16))),
    Case("classifier-wrong-output-shape",
         call=lambda ws: box(Returns(lambda x: torch.zeros(len(x) + 1, 1)))(
             torch.zeros(2, 3, 16, 16))),
    Case("classifier-wrong-input-channels",
         call=lambda ws: load_blackbox(str(ws.classifier))(torch.zeros(2, 1, 16, 16))),
    Case("classifier-no-gradient",
         call=lambda ws: latent_shift_of(
             ws, lambda x: load_blackbox(str(ws.classifier))(x).detach())),
    Case("classifier-zero-gradient",
         call=lambda ws: latent_shift_of(
             ws, lambda x: 0.25 + 0.5 * torch.round(load_blackbox(str(ws.classifier))(x)))),
    Case("classifier-file-missing",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier", ws.root / "absent.pt",
                                  "--allow-classifier-mismatch")),
    Case("classifier-wrong-kind",
         call=lambda ws: load_blackbox(str(ws.explainer))),
    Case("classifier-import-not-allowed",
         call=lambda ws: load_blackbox("os.path:join")),
    Case("classifier-torch-export-pickled",
         call=lambda ws: load_blackbox(
             str(write_crafted_export(ws.root / "c.pt2", ws.root / "ran")))),
    Case("classifier-not-the-explained-one",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier",
                                  write_classifier_bundle(ws.root / "other.pt", seed=1))),
    Case("classifier-not-the-explained-one-evaluate", argv=evaluate_other_classifier),
    Case("classifier-one-bin-of-training-posteriors",
         argv=explainer_of_a_classifier_of_one_answer, exit_code=0),
    Case("classifier-output-not-chosen",
         argv=lambda ws: explainer_fit(ws, "--model.classifier",
                                       write_two_class_torchscript(ws.root / "two.ts"))),
    # checkpoint
    Case("checkpoint-truncated",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier", truncated(ws),
                                  "--allow-classifier-mismatch")),
    Case("checkpoint-empty-file",
         call=lambda ws: ProgressiveExaggeration.from_checkpoint(empty_file(ws))),
    Case("checkpoint-runs-code",
         argv=lambda ws: fit(ws, "--ckpt_path", write_crafted_pickle(
             ws.root / "evil.ckpt", ws.root / "ran", as_torch_zip=True))),
    Case("checkpoint-resume-missing",
         argv=lambda ws: fit(ws, "--ckpt_path", ws.root / "absent.ckpt")),
    Case("checkpoint-explainer-missing",
         argv=lambda ws: ["generate", "--checkpoint", ws.root / "absent.pt",
                          "--input", "synthetic:test", "--out", ws.root / "strips"]),
    Case("checkpoint-text-file",
         argv=lambda ws: ["generate", "--checkpoint", text_file(ws), "--input", "synthetic:test",
                          "--out", ws.root / "strips"]),
    Case("checkpoint-resume-other-architecture", argv=resumed_with_another_width),
    Case("checkpoint-resume-file-other-settings", argv=resumed_from_the_file_with_another_width),
    Case("checkpoint-resume-last-missing",
         argv=lambda ws: fit(ws, "--trainer.default_root_dir", ws.root / "fresh",
                             "--ckpt_path", "last")),
    Case("checkpoint-resume-another-model", argv=classifier_resumed_from_an_explainer),
    Case("checkpoint-resume-not-a-training-checkpoint",
         argv=lambda ws: fit(ws, "--ckpt_path", ws.run / "classifier.pt")),
]  # fmt: skip
