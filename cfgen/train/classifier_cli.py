"""`cfgen classifier fit|validate|test`: the LightningCLI of `ClassifierModule`.

    cfgen classifier fit --config configs/classifier/synthetic_smile.yaml --trainer.max_epochs 3
    cfgen classifier test --config configs/classifier/synthetic_smile.yaml \
        --ckpt_path runs/classifier/synthetic_smile/checkpoints/last.ckpt

On top of `CfgenCLI`: `fit` also tests the final weights, both end with a one-line summary, and
a validation or test split with one class of the target is warned about.
"""

import sys
from collections.abc import Sequence

from cfgen.train.classifier import BUNDLE_NAME, ClassifierModule
from cfgen.train.lightning_cli import CfgenCLI, run_cli


class ClassifierCLI(CfgenCLI):
    """`fit` also tests the final weights; `fit` and `test` end with a short summary. A
    validation or test split without both classes of the target is warned about at the start
    (its AUC is undefined) and its AUC printed as undefined."""

    def _lacking(self, split: str) -> str | None:
        data = self.datamodule
        if not hasattr(data, "missing_class"):
            return None
        data.setup()
        return data.missing_class(split)

    def _warn_one_class(self, splits: Sequence[str]) -> None:
        if not self.trainer.is_global_zero:
            return
        for split in splits:
            lacking = self._lacking(split)
            if lacking:
                print(
                    f"warning: {lacking}: its AUC is undefined and its other figures describe "
                    "one class only; give it images of both classes",
                    file=sys.stderr,
                )

    def before_fit(self) -> None:
        self._warn_one_class(("val", "test"))

    def before_test(self) -> None:
        self._warn_one_class(("test",))

    def after_fit(self) -> None:
        self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        self._print_summary()

    def after_test(self) -> None:
        self._print_summary()

    def _print_summary(self) -> None:
        if not self.trainer.is_global_zero:  # one summary per run, not one per process
            return
        metrics = self.trainer.callback_metrics
        # torchmetrics reports 0 for an AUC it cannot compute.
        undefined = {"auc"} if self._lacking("test") else set()
        figures = ", ".join(
            f"{name} undefined" if name in undefined else f"{name} {float(metrics[key]):.4f}"
            for name in ("auc", "acc", "ece", "class_acc")
            if (key := f"test/{name}") in metrics
        )
        bundle = self.run_dir / BUNDLE_NAME
        print(f"classifier target {self.model.data_facts['target']!r}: test {figures}")
        if bundle.is_file():
            print(f"classifier bundle: {bundle}")
        print(f"run directory: {self.run_dir}")


def cli_main(argv: Sequence[str]) -> int:
    """`cfgen classifier fit|validate|test|predict ...`; returns the exit code."""
    from cfgen.data.datamodule import AttributeDataModule

    return run_cli(
        ClassifierModule,
        AttributeDataModule,
        argv,
        run_dir="runs/classifier/default",
        cli_class=ClassifierCLI,
        trainer_overrides={"max_epochs": 3},
    )
