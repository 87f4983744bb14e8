"""Tiny model files on disk, as users hand them to cfgen: bundles, and pickles that run code.

Built without training (random weights), so tests of loading, generation and bad inputs stay
instant. Shared by the reliability tests (`test_security.py`, `test_bad_inputs.py`,
`test_determinism.py`).
"""

import io
import json
import pickle
import zipfile
from pathlib import Path

import torch

from cfgen.explain.bundle import EXPLAINER_KIND
from cfgen.io import file_sha256, save_bundle
from cfgen.models.classifiers import build_classifier
from cfgen.models.generator import Generator

IMAGE_SIZE = 16
N_BINS = 4
ATTRIBUTES = ["Eyeglasses", "Smiling"]


class RunsCode:
    """Unpickling this object runs `exec` of a line that creates `marker`: a crafted file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def write_crafted_pickle(path: Path, marker: Path, as_torch_zip: bool = False) -> Path:
    """A model-looking file whose loading would run code (creating `marker`).

    `as_torch_zip` writes it with `torch.save` (a zip archive, like real checkpoints); otherwise
    it is a raw pickle stream.
    """
    payload = {"format": "cfgen-bundle", "kind": "classifier", "state_dict": RunsCode(marker)}
    if as_torch_zip:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def write_classifier_bundle(path: Path, seed: int = 0, output: str = "logits") -> Path:
    """An untrained small CNN over 16 px RGB images as a cfgen classifier bundle."""
    torch.manual_seed(seed)
    model = build_classifier("small_cnn", len(ATTRIBUTES), IMAGE_SIZE, 3)
    config = {
        "arch": "small_cnn",
        "num_outputs": len(ATTRIBUTES),
        "attribute_names": ATTRIBUTES,
        "target": "Smiling",
        "image_size": IMAGE_SIZE,
        "in_channels": 3,
        "output": output,
        "activation": "sigmoid",
    }
    return save_bundle(path, "classifier", config, model.state_dict())


def write_explainer_bundle(path: Path, classifier_path: Path, seed: int = 0) -> Path:
    """An untrained 16 px, 4-bin generator as an explainer bundle tied to `classifier_path`."""
    torch.manual_seed(seed)
    generator_config = {
        "image_size": IMAGE_SIZE,
        "channels": 3,
        "n_bins": N_BINS,
        "base_width": 8,
        "max_width": 16,
    }
    generator = Generator(**generator_config)
    config = {
        "generator": generator_config,
        "n_bins": N_BINS,
        "image_size": IMAGE_SIZE,
        "channels": 3,
        "bin_target_kind": "centre",
        "classifier": {"path": str(classifier_path), "sha256": file_sha256(classifier_path)},
    }
    return save_bundle(path, EXPLAINER_KIND, config, generator.state_dict())


def write_model_pair(folder: Path) -> tuple[Path, Path]:
    """`classifier.pt` and `explainer.pt` in `folder`, the explainer tied to the classifier."""
    folder.mkdir(parents=True, exist_ok=True)
    classifier = write_classifier_bundle(folder / "classifier.pt")
    return classifier, write_explainer_bundle(folder / "explainer.pt", classifier)


def write_crafted_export(path: Path, marker: Path) -> Path:
    """A real `torch.export` archive whose weight is swapped for a pickle that creates `marker`.

    torch.export.load reads weights marked `use_pickle` with `torch.load(weights_only=False)`.
    """
    program = torch.export.export(torch.nn.Linear(2, 1), (torch.zeros(1, 2),))
    clean = io.BytesIO()
    torch.export.save(program, clean)
    payload = io.BytesIO()
    torch.save(RunsCode(marker), payload)
    with zipfile.ZipFile(clean) as source:
        config_name = next(n for n in source.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(source.read(config_name))
        config["config"]["weight"]["use_pickle"] = True
        weight_name = f"weights/{config['config']['weight']['path_name']}"
        with zipfile.ZipFile(path, "w") as crafted:
            for item in source.infolist():
                data = source.read(item.filename)
                if item.filename == config_name:
                    data = json.dumps(config).encode()
                elif item.filename.endswith(weight_name):
                    data = payload.getvalue()
                crafted.writestr(item, data)
    return path
