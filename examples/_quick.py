"""Tiny stand-ins for your files, for the examples' `--quick` runs (not part of what you copy).

`quick_folder(work)` writes 200 synthetic faces of 16 px as an attribute folder (what
`cfgen data synth` writes: images/*.png and attributes.csv with a split column);
`quick_explainer(work)` trains a classifier and an explainer on it for a few steps with the
command line (`cfgen classifier fit`, `cfgen explainer fit`). Files already in `work` are reused,
so examples sharing a work folder build them once. The figures they give are meaningless: they
only show that everything runs.
"""

from pathlib import Path

from cfgen.cli import main as cfgen

SIZE = 16
QUIET = ["--logger", "none", "--trainer.enable_progress_bar", "false"]
QUIET += ["--trainer.enable_model_summary", "false"]


def quick_folder(work: Path) -> Path:
    """200 synthetic faces of 16 px in `work/faces` (attributes.csv: Smiling, Eyeglasses, ...)."""
    folder = work / "faces"
    if not (folder / "attributes.csv").is_file():
        run("data", "synth", "--out", str(folder), "--n", "200", "--size", str(SIZE))
    return folder


def quick_explainer(work: Path) -> tuple[Path, Path]:
    """(explainer.pt, the folder it explains): a Smiling classifier and its explainer, a few
    training steps each."""
    folder = quick_folder(work)
    classifier, explainer = work / "classifier", work / "explainer"
    if not (classifier / "classifier.pt").is_file():
        run(
            "classifier", "fit", "--config", "configs/classifier/folder.yaml",
            "--data.root", str(folder), "--data.target", "Smiling",
            "--data.image_size", str(SIZE), "--trainer.max_epochs", "1",
            "--trainer.default_root_dir", str(classifier), *QUIET,
        )  # fmt: skip
    if not (explainer / "explainer.pt").is_file():
        run(
            "explainer", "fit", "--config", "configs/explainer/synthetic_smile.yaml",
            "--data.source", "folder", "--data.root", str(folder), "--data.image_size", "null",
            "--generator_steps", "4",
            "--model.classifier", str(classifier / "classifier.pt"),
            "--model.generator.width", "8", "--model.generator.max_width", "16",
            "--model.discriminator.width", "8", "--model.discriminator.max_width", "16",
            "--monitor.every_n_steps", "4", "--monitor.n_queries", "8",
            "--trainer.default_root_dir", str(explainer), *QUIET,
        )  # fmt: skip
    return explainer / "explainer.pt", folder


def run(*argv: str) -> None:
    """`cfgen ARGV...` in this process; stop on an error."""
    if cfgen(list(argv)) != 0:
        raise SystemExit(f"cfgen {' '.join(argv)} failed")
