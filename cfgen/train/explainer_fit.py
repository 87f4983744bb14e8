"""Training an explainer from Python, without the command line.

    classifier = torch.jit.load("smile.torchscript.pt")          # or any nn.Module / callable
    module = ExplainerModule(classifier, classifier_output=1, classifier_activation="softmax",
                             image_size=32, generator={"output": "blend"})
    data = ExplainerDataModule(source="folder", root="faces", image_size=32)
    explainer = fit_explainer(module, data, generator_steps=700, out="runs/pe")

`fit_explainer` is what `cfgen explainer fit` does around the module, as one call: a Trainer
on the CPU (or `accelerator=...`) for a run measured in generator steps, validation every
`validate_every` generator steps with the monitor's `monitor.json` and strip figures
(`cfgen.train.callbacks.ExplainerMonitor`), `checkpoints/last.ckpt`, and the exported
`<out>/explainer.pt`. It returns the trained explainer with the module's own black box, so a
classifier held in memory needs no file at any point. The data module reads the posteriors
from that black box and takes its bins from the module.
"""

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from cfgen.errors import ConfigError
from cfgen.explain.progressive import PLACEMENT_STEPS, ProgressiveExaggeration
from cfgen.io import PathLike
from cfgen.train.callbacks import ExplainerMonitor
from cfgen.train.explainer import ExplainerModule
from cfgen.train.explainer_checkpoint import BUNDLE_NAME
from cfgen.train.explainer_data import ExplainerDataModule
from cfgen.train.explainer_steps import optimizer_steps


def fit_explainer(
    module: ExplainerModule,
    data: ExplainerDataModule,
    generator_steps: int,
    out: PathLike,
    validate_every: int | None = None,
    seed: int = 0,
    placement_steps: int = PLACEMENT_STEPS,
    **trainer_options: Any,
) -> ProgressiveExaggeration:
    """Train `module` on `data` for `generator_steps` generator steps, into the folder `out`.

    Args:
        module: the explainer to train (its classifier: a file or a model in memory).
        data: its images (`ExplainerDataModule`; image size and channels the module's).
        generator_steps: the length of the run.
        out: the run folder: `explainer.pt`, `checkpoints/last.ckpt`, `monitor.json`, `strips/`.
        validate_every: validate (and record the monitor's figures) every this many generator
            steps; default once, at the end.
        seed: seeds every random generator before the module trains.
        placement_steps: the returned explainer's (`ProgressiveExaggeration`).
        trainer_options: more `pytorch_lightning.Trainer` arguments (`accelerator="gpu"`,
            `logger=...`, `enable_progress_bar=False`, ...).

    Returns the trained explainer (the exported EMA generator and the module's black box).
    """
    if generator_steps < 1:
        raise ConfigError(f"generator_steps must be >= 1, got {generator_steps}")
    _check_shapes(module, data)
    out = Path(out)
    every = validate_every or generator_steps
    n_critic = module.optimisation.n_critic
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "default_root_dir": str(out),
        "max_steps": optimizer_steps(generator_steps, n_critic),
        "val_check_interval": every * n_critic,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "enable_model_summary": False,
    }
    callbacks = [
        ExplainerMonitor(every_n_steps=every, n_queries=data.val_queries),
        ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0),
    ]
    options |= trainer_options
    options["callbacks"] = callbacks + list(options.get("callbacks") or [])
    pl.seed_everything(seed, verbose=False)
    pl.Trainer(**options).fit(module, data)
    return ProgressiveExaggeration.from_checkpoint(
        out / BUNDLE_NAME, classifier=module.classifier, placement_steps=placement_steps
    )


def _check_shapes(module: ExplainerModule, data: ExplainerDataModule) -> None:
    """The data's image size and channels, when set, are the module's."""
    for name in ("image_size", "channels"):
        wanted, given = module.hparams[name], getattr(data, name, None)
        if given is not None and given != wanted:
            raise ConfigError(
                f"the explainer module takes {name} {wanted} but the data module gives {given}; "
                f"give both the same {name}"
            )
