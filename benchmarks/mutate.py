"""Mutation check: each bug below, planted on purpose, must make the test suite fail.

    .venv/bin/python benchmarks/mutate.py                 # every mutation, table at the end
    .venv/bin/python benchmarks/mutate.py --only ema-never-updated cbn-reads-bin-0
    .venv/bin/python benchmarks/mutate.py --list          # names, files, likely catching tests
    .venv/bin/python benchmarks/mutate.py --not-slow      # without the learning test: minutes

Each mutation is (file, exact snippet, replacement). For each, the repository's files (tracked
and untracked-but-not-ignored, as `git ls-files` lists them) are copied to a temporary folder,
the snippet is replaced there, and pytest runs in that copy (`PYTHONPATH` pointing at it) on the
test files that matter for that bug (`likely`, fastest first, with `-x`), so a run of every
mutation takes minutes, not the hour of a whole suite per mutant. A mutation those files miss is
reported NOT caught; `--whole-suite` then also runs the whole suite on it, to tell a missing test
from a test missing in the list. The table says, per mutation, which test caught it.

A snippet that is not found exactly once stops the run before anything is tested: the code moved
and the mutation's pattern must be updated, not skipped. The unmutated copy is tested first (the
union of the likely files): a failure there would make every "caught" meaningless.

Not part of `make test`: it runs the slow learning test several times. Run it under the
machine's heavy-job lock: `flock /tmp/cfgen-heavy.lock nice -n 10 .venv/bin/python
benchmarks/mutate.py`.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPLAINER = "cfgen/train/explainer.py"
OBJECTIVE = "cfgen/train/explainer_objective.py"
CHECKPOINT = "cfgen/train/explainer_checkpoint.py"
STEPS = "cfgen/train/explainer_steps.py"
LEARNING = "tests/train/test_learning.py"
LOSS_ASSEMBLY = "tests/train/test_generator_step.py"
OUTPUTS = "tests/train/test_generator_outputs.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    file: str
    snippet: str
    replacement: str
    likely: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "cbn-reads-bin-0",
        "the generator ignores its target bin: conditional batch norm always reads bin 0",
        "cfgen/models/blocks.py",
        "        gamma = _lookup(self.gamma, label)[:, :, None, None]\n",
        "        label = torch.zeros_like(label)\n"
        "        gamma = _lookup(self.gamma, label)[:, :, None, None]\n",
        ("tests/models/test_generator.py", LEARNING),
    ),
    Mutation(
        "classifier-term-dropped",
        "the classifier-consistency term is left out of the generator loss",
        OBJECTIVE,
        '            "classifier": self._consistency(viewed, target_posterior),\n',
        "",
        (LOSS_ASSEMBLY, LEARNING),
    ),
    Mutation(
        "classifier-term-sign-flipped",
        "the classifier-consistency term pushes away from the target (a published port's bug)",
        OBJECTIVE,
        '"classifier": self._consistency(',
        '"classifier": -self._consistency(',
        (LOSS_ASSEMBLY, LEARNING),
    ),
    Mutation(
        "bins-swapped-in-generator-step",
        "target bin and source bin swapped in the generator step",
        EXPLAINER,
        "images, posteriors, source_bin, fakes, target_bin, context",
        "images, posteriors, target_bin, fakes, source_bin, context",
        (LOSS_ASSEMBLY, LEARNING),
    ),
    Mutation(
        "ema-never-updated",
        "the EMA generator is never updated (validation and export see the initial weights)",
        EXPLAINER,
        "            self._update_ema()\n",
        "",
        (LOSS_ASSEMBLY, LEARNING),
    ),
    Mutation(
        "raw-generator-exported",
        "explainer.pt holds the raw generator where the EMA one is documented",
        CHECKPOINT,
        "            self.ema_generator.state_dict(),\n",
        "            self.generator.state_dict(),\n",
        (LOSS_ASSEMBLY, LEARNING),
    ),
    Mutation(
        "cycle-decodes-target-bin",
        "the cycle pass decodes with the target bin instead of the query's own bin",
        OBJECTIVE,
        "cycled = self.generator.decode(fake_features, fakes, source_bin)",
        "cycled = self.generator.decode(fake_features, fakes, target_bin)",
        (LOSS_ASSEMBLY, LEARNING),
    ),
    Mutation(
        "reconstruction-targets-bin-centre",
        "the reconstruction term targets the centre of the query's bin, not its own posterior",
        OBJECTIVE,
        "self._consistency(cycled, posteriors)",
        "self._consistency(cycled, bin_target(source_bin, self.n_bins))",
        (LOSS_ASSEMBLY,),
    ),
    Mutation(
        "redraw-blend-moves-the-drawing",
        "under weights.redraw or a fixed drawing the classifier term also trains what is drawn",
        OBJECTIVE,
        "classified = fakes - removed * mask * (drawn - drawn.detach())",
        "classified = fakes",
        (OUTPUTS, LOSS_ASSEMBLY),
    ),
    Mutation(
        "fixed-drawing-share-ignored",
        "a fixed drawing gets none of the classifier term's gradient whatever its share",
        OBJECTIVE,
        "else 1 - self.drawing_share",
        "else 1.0",
        (OUTPUTS,),
    ),
    Mutation(
        "patch-hinge-left-out-of-d",
        "the patch critic's hinge is logged but not added to D's loss",
        EXPLAINER,
        '            loss = loss + losses["discriminator_patch"]\n',
        "",
        (LOSS_ASSEMBLY,),
    ),
    Mutation(
        "cutmix-negatives-over-every-window",
        "the patch critic's negatives are scored fake everywhere, not on the pasted box",
        "cfgen/losses.py",
        "(F.relu(1.0 + fake_scores) * windows).sum() / windows.sum()",
        "F.relu(1.0 + fake_scores).mean()",
        ("tests/test_losses.py", LOSS_ASSEMBLY),
    ),
    Mutation(
        "patch-window-one-layer-too-many",
        "the patch critic reads a window 2 px wider than its patch_size",
        "cfgen/models/discriminator.py",
        "for index in range((patch_size - 1) // 2):",
        "for index in range((patch_size + 1) // 2):",
        ("tests/models/test_discriminator.py",),
    ),
    Mutation(
        "difference-own-bin-of-the-first-query",
        "a difference explainer renders every query from the first query's own bin",
        "cfgen/explain/rendering.py",
        "posterior_to_bin(own, generator.n_bins)",
        "posterior_to_bin(own[:1].expand_as(own), generator.n_bins)",
        ("tests/explain/test_progressive.py",),
    ),
    Mutation(
        "discriminator-sees-real-images-unviewed",
        "with discriminator views on, D's step judges the real images without them",
        EXPLAINER,
        "        real_scores = self._judge(images, source_bin)\n",
        "        real_scores = self.discriminator(images, source_bin)\n",
        (LOSS_ASSEMBLY,),
    ),
    Mutation(
        "standing-statistics-at-the-own-bins",
        "the EMA generator's batch-norm statistics are recomputed at the queries' own bins, not "
        "at random target bins as the edit pass renders",
        STEPS,
        "torch.randint(n_bins, bins.shape, generator=draws).to(bins)",
        "bins",
        ("tests/train/test_explainer.py",),
    ),
    Mutation(
        "blackbox-reads-column-0",
        "the black box always reads output column 0 (a published port's bug)",
        "cfgen/models/blackbox_adapter.py",
        "        return ACTIVATIONS[self.activation](scores)[:, self.target_index]\n",
        "        return ACTIVATIONS[self.activation](scores)[:, 0]\n",
        ("tests/models/test_blackbox.py",),
    ),
    Mutation(
        "fid-of-a-set-with-itself",
        "FID computed between the real set and itself",
        "cfgen/evaluate/realism.py",
        "    metric.update(fake.double(), real=False)\n    return float(metric.compute())\n",
        "    metric.update(real.double(), real=False)\n    return float(metric.compute())\n",
        ("tests/evaluate/test_realism.py", "tests/evaluate/test_scoring.py"),
    ),
    Mutation(
        "compat-against-neighbour-centre",
        "compatibility computed against the next bin's centre",
        "cfgen/evaluate/shift.py",
        "    target = bin_target(target_bins, n_bins, kind).to(posteriors)\n",
        "    target = bin_target(target_bins + 1, n_bins, kind).to(posteriors)\n",
        ("tests/evaluate/test_shift.py",),
    ),
    Mutation(
        "compat-against-lower-edge",
        "compatibility computed against the bin's lower edge instead of its centre",
        "cfgen/evaluate/shift.py",
        "    target = bin_target(target_bins, n_bins, kind).to(posteriors)\n",
        '    target = bin_target(target_bins, n_bins, "lower").to(posteriors)\n',
        ("tests/evaluate/test_shift.py",),
    ),
    Mutation(
        "critic-auc-pools-the-bins",
        "the critic's AUC compares every far frame with every query, whatever their bins",
        STEPS,
        "    same_bin = (own_bin[:, None] == far_bin[None, :]).float()\n",
        "    same_bin = torch.ones(len(own_bin), len(far_bin))\n",
        ("tests/train/test_explainer_steps.py",),
    ),
    Mutation(
        "history-never-swaps",
        "the history of frames is kept but never shown to the discriminator",
        STEPS,
        "            mixed[swapped], mixed_bins[swapped] = self.images[drawn], self.bins[drawn]\n",
        "            pass\n",
        ("tests/train/test_explainer_steps.py",),
    ),
    Mutation(
        "every-window-edited",
        "patch_fakes: edited marks every window as edited, the threshold ignored",
        "cfgen/train/augment.py",
        "    changed = ((frames - images).abs().amax(dim=1, keepdim=True) > EDITED).to(images)\n",
        "    changed = torch.ones_like(images[:, :1])\n",
        ("tests/train/test_augment.py",),
    ),
]


def repository_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a commit of the working tree holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (repo / name).is_file()]


def copy_tree(repo: Path, files: list[str], destination: Path) -> None:
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)


def check_patterns(repo: Path, mutations: list[Mutation]) -> None:
    """Every snippet found exactly once, or stop with the list of stale patterns."""
    stale = []
    for mutation in mutations:
        path = repo / mutation.file
        count = path.read_text().count(mutation.snippet) if path.is_file() else 0
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times"
            stale.append(f"  {mutation.name}: snippet {where} in {mutation.file}")
    if stale:
        sys.exit(
            "mutation patterns out of date (the code moved); update each pattern in "
            "benchmarks/mutate.py to the current code:\n" + "\n".join(stale)
        )


def run_pytest(
    copy: Path, targets: list[str], timeout: int, not_slow: bool = False
) -> tuple[bool, str, float]:
    """(passed, first failing test or reason, seconds) of `pytest -x targets` inside `copy`.

    not_slow: deselect the tests marked slow (the learning test). Nothing left to run counts as
    passed (nothing caught the mutation), not as a failure.
    """
    env = {**os.environ, "PYTHONPATH": str(copy), "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider"]
    command += ["-m", "not slow"] if not_slow else []
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [*command, *targets], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return False, f"timeout after {timeout} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if result.returncode == 0:
        return True, "", seconds
    if result.returncode == 5:  # pytest: no tests collected
        return True, "no test ran", seconds
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", result.stdout, flags=re.MULTILINE)
    reason = failed.group(1) if failed else f"pytest exit code {result.returncode}"
    return False, reason, seconds


def try_mutation(repo: Path, files: list[str], mutation: Mutation, args) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.name}-") as folder:
        copy = Path(folder)
        copy_tree(repo, files, copy)
        path = copy / mutation.file
        path.write_text(path.read_text().replace(mutation.snippet, mutation.replacement))
        passed, caught_by, seconds = run_pytest(
            copy, list(mutation.likely), args.timeout, args.not_slow
        )
        stage = "likely files"
        if passed and args.whole_suite:
            passed, caught_by, more = run_pytest(copy, ["tests"], args.timeout, args.not_slow)
            seconds, stage = seconds + more, "whole suite"
    return {"caught": not passed, "by": caught_by, "seconds": seconds, "stage": stage}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--whole-suite",
        action="store_true",
        help="also run the whole suite on a mutation its likely files miss (slow)",
    )
    parser.add_argument(
        "--not-slow",
        action="store_true",
        help="leave out the slow tests (the learning test): minutes, no training",
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per pytest run")
    args = parser.parse_args()
    mutations = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; see --list")
        mutations = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in mutations:
            print(f"{m.name}: {m.bug}\n    {m.file}; likely caught by {', '.join(m.likely)}")
        return 0
    check_patterns(REPO, mutations)
    files = repository_files(REPO)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True).stdout
    print(f"commit {commit}{' + uncommitted changes' if dirty.strip() else ''}", flush=True)
    if args.not_slow:
        print("slow tests left out (-m 'not slow'): the learning test does not run", flush=True)

    baseline = sorted({test for m in mutations for test in m.likely})
    with tempfile.TemporaryDirectory(prefix="mutant-none-") as folder:
        copy_tree(REPO, files, Path(folder))
        passed, failure, seconds = run_pytest(Path(folder), baseline, args.timeout, args.not_slow)
    if not passed:
        sys.exit(f"the unmutated suite fails ({failure}): fix it before judging mutations")
    print(f"unmutated: {len(baseline)} likely files pass ({seconds:.0f} s)", flush=True)

    rows = []
    for mutation in mutations:
        result = try_mutation(REPO, files, mutation, args)
        verdict = "caught" if result["caught"] else "NOT CAUGHT"
        print(f"{mutation.name}: {verdict} {result['by']} ({result['seconds']:.0f} s)", flush=True)
        rows.append((mutation, result))

    print("\n| mutation | bug | suite | first failing test | s |")
    print("| --- | --- | --- | --- | --- |")
    for mutation, result in rows:
        verdict = "fails (caught)" if result["caught"] else "**passes (NOT caught)**"
        by = f"`{result['by']}`" if result["by"] else f"(ran {result['stage']})"
        seconds = f"{result['seconds']:.0f}"
        print(f"| `{mutation.name}` | {mutation.bug} | {verdict} | {by} | {seconds} |")
    missed = [mutation.name for mutation, result in rows if not result["caught"]]
    if missed:
        print(f"\nnot caught: {', '.join(missed)}: add the test that catches each")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
