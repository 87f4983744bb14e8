"""User-facing errors.

Anything a user can cause (bad data, bad config, wrong checkpoint, missing weights) raises a
subclass of `CfgenError` with a message that names the problem and what to do. The CLI prints
these messages without a traceback; everything else is a bug and keeps its traceback.
"""


class CfgenError(Exception):
    """An error caused by input the user controls; its message says what to do."""


class DataError(CfgenError, ValueError):
    """A data set, image, CSV or label problem."""


class ConfigError(CfgenError, ValueError):
    """A configuration or command-line problem."""


class ClassifierError(CfgenError, ValueError):
    """The black-box classifier does not behave as declared."""


class CheckpointError(CfgenError, ValueError):
    """A checkpoint or model file is missing, unsafe, corrupt or does not match."""


class ClassifierMismatchError(CheckpointError):
    """An explainer is asked to explain another classifier than the one it was trained for.

    `problem` says which files differ; the message ends with the way to go on anyway, for the
    Python API unless an entry point names its own option (`with_option`).
    """

    def __init__(self, problem: str, option: str = "allow_classifier_mismatch=True") -> None:
        super().__init__(
            f"{problem}; use that classifier, or pass {option} to explain another anyway"
        )
        self.problem = problem

    def with_option(self, option: str) -> "ClassifierMismatchError":
        """The same error, advising `option` (e.g. a command's flag)."""
        return ClassifierMismatchError(self.problem, option)


class WeightsMissingError(CfgenError, FileNotFoundError):
    """Pretrained weights (LPIPS backbone, Inception) are not in the local cache."""


class TrainingDivergedError(CfgenError, RuntimeError):
    """Training produced a non-finite loss or collapsed; the last good checkpoint is kept."""


class RunInterrupted(Exception):
    """A run stopped by SIGTERM or SIGINT after saving what it needs to resume.

    `resume_args`: what to add to the same command line to resume (e.g. `--ckpt_path last`);
    `drop_args`: flags of the command line that resuming must leave out (e.g. `--overwrite`);
    `exit_code`: 128 + the signal's number, as a shell reports a process killed by it.
    """

    def __init__(
        self,
        message: str,
        resume_args: tuple[str, ...] = (),
        exit_code: int = 143,
        drop_args: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.resume_args = resume_args
        self.exit_code = exit_code
        self.drop_args = drop_args
