"""Held out by construction: the evaluation refuses queries any of its models trained on.

Every training command records in its bundle what the model saw (`meta.data`,
`cfgen.data.datamodule.AttributeDataModule.training_record`): the source and where it lives, the
seed, the training part and the splits it read (train for the weights, val for choosing among
checkpoints). Before anything is scored, each bundle the evaluation reads (the explainer, the
classifier, the judges, the oracle, the latent shift's autoencoder) is compared with the
queries: the same data and the queries' split among those it read is an error that names the
bundle. The synthetic world draws other faces for another seed, so only the same seed overlaps;
a folder without a split column is split by the seed, so another seed may put training images
among the queries and is refused too. A bundle without a record (an older cfgen, a file made
elsewhere) cannot be checked: it is listed in `results.json` (`held_out.unrecorded`).
"""

from pathlib import Path

from cfgen.errors import CfgenError, ConfigError
from cfgen.io import safe_torch_load


def recorded_data(path: str) -> dict | None:
    """The training record of a cfgen bundle at `path`, or None when it has none."""
    from cfgen.models.blackbox import archive_kind

    if archive_kind(Path(path)) != "bundle":  # TorchScript, torch.export: no record
        return None
    try:
        bundle = safe_torch_load(path)
    except CfgenError:  # not a torch file of weights (TorchScript, an export): no record
        return None
    if not isinstance(bundle, dict):
        return None
    return (bundle.get("meta") or {}).get("data")


def _same_data(record: dict, source: str, root: str | None, seed: int) -> bool:
    if record.get("source") != source:
        return False
    if source == "synthetic":
        return record.get("seed") == seed
    resolved = None if root is None else str(Path(root).resolve())
    return record.get("root") == resolved


def overlap(record: dict, source: str, root: str | None, split: str, seed: int) -> str | None:
    """Why queries of `split` may be images the recorded model trained on, or None."""
    if not _same_data(record, source, root, seed):
        return None
    if split in record.get("splits", []):
        return f"it read the {split} split of the same data ({record.get('splits')})"
    if source != "synthetic" and record.get("seed") != seed:
        return (
            f"it was trained with data seed {record.get('seed')}, the evaluation uses {seed}: "
            "a folder without a split column is split by the seed, so its training images may "
            f"be among the queries (set seed: {record.get('seed')})"
        )
    return None


def check_held_out(bundles: dict[str, str], source: str, root: str | None, split: str, seed: int):
    """Refuse queries that a model of `bundles` (role -> path) trained on; returns the roles
    whose bundle records nothing (unchecked)."""
    unrecorded = []
    for role, path in bundles.items():
        record = recorded_data(path)
        if record is None:
            unrecorded.append(role)
            continue
        why = overlap(record, source, root, split, seed)
        if why is not None:
            raise ConfigError(
                f"the queries (the {split} split of {root or source}) are not held out from "
                f"the {role} {path}: {why}. Evaluate on a split it never read (split: test), "
                "or train it on other data"
            )
    return unrecorded
