"""The `cfgen` command: one entry point, sub-commands dispatched to the module that owns them.

    cfgen data synth --out DIR --n 1000 --size 64
    cfgen classifier fit --config configs/classifier/synthetic_smile.yaml
    cfgen oracle fit --config configs/oracle/synthetic.yaml
    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml
    cfgen generate --checkpoint runs/.../explainer.pt --input DIR --out DIR
    cfgen evaluate --config configs/evaluate/synthetic_smile.yaml
    cfgen demo [--quick]

The commands are listed in `cfgen.commands`; a command's module is imported only when it runs,
so `cfgen --help` is instant. Errors the user can fix (`CfgenError`) are printed as one clear
message without a traceback.
"""

import errno
import shlex
import sys
from collections.abc import Sequence

from cfgen.commands import COMMANDS, load_command, resolve_config_args
from cfgen.errors import CfgenError, RunInterrupted


def _usage() -> str:
    lines = ["usage: cfgen COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {spec[2]}" for name, spec in COMMANDS.items()]
    lines += ["", "Run `cfgen COMMAND --help` for the arguments of a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    command = load_command(name)
    try:
        result = command(resolve_config_args(rest))
    except RunInterrupted as stop:
        again = resume_command(name, rest, stop.resume_args, stop.drop_args)
        print(f"{stop}\nto resume: {again}", file=sys.stderr)
        return stop.exit_code
    except CfgenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # Raised by writers cfgen does not own (Lightning's checkpoints, loggers).
        print(
            f"error: no space left on the device ({error}); free some disk space and resume: "
            "files and checkpoints written before are intact",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished stages and checkpoints are kept", file=sys.stderr)
        return 130
    return int(result or 0)


def resume_command(
    name: str, argv: Sequence[str], resume_args: Sequence[str], drop_args: Sequence[str] = ()
) -> str:
    """The command line that resumes `cfgen NAME ARGV`: the same without the flags `drop_args`,
    plus `resume_args` (which replace an earlier value of the same option)."""
    argv = [arg for arg in argv if arg not in drop_args]
    if resume_args and resume_args[0] in argv:
        index = argv.index(resume_args[0])
        del argv[index : index + len(resume_args)]
    return shlex.join(["cfgen", name, *argv, *resume_args])


if __name__ == "__main__":
    sys.exit(main())
