import pytest
import torch

from cfgen.data.chexpert import CheXpert, chexpert_splits
from cfgen.errors import ConfigError, DataError
from tests.data.fakes import random_pixels, write_csv, write_png

LABELS = ["Edema", "Cardiomegaly"]
# (patient, Edema, Cardiomegaly): 1 positive, 0 negative, -1 uncertain, "" not mentioned.
ROWS = [(1, "1.0", ""), (1, "-1.0", "0.0"), (2, "0.0", "1.0"), (3, "", "-1.0"), (4, "1.0", "1.0")]


def _write(root, csv="train.csv", folder="train", rows=ROWS):
    table = []
    for i, (patient, edema, cardio) in enumerate(rows):
        name = f"CheXpert-v1.0-small/{folder}/patient{patient:05d}/study1/view{i}_frontal.jpg"
        write_png((root / name.split("/", 1)[1]).with_suffix(".jpg"), random_pixels(i, 10, 12, 1))
        table.append([name, "Female", 60, edema, cardio])
    return write_csv(root / csv, ["Path", "Sex", "Age", *LABELS], table)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    _write(root)
    _write(root, "valid.csv", "valid", rows=[(9, "1.0", "0.0"), (10, "0.0", "0.0")])
    return root


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("zeros", [[1, 0], [0, 0], [0, 1], [0, 0], [1, 1]]),
        ("ones", [[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]]),
        ("ignore", [[1, 0], [0, 1], [1, 1]]),
    ],
)
def test_uncertain_policies(root, policy, expected):
    data = CheXpert(root, labels=LABELS, uncertain=policy, image_size=8)
    torch.testing.assert_close(data.labels, torch.tensor(expected, dtype=torch.float32))


def test_grey_xrays_stay_one_channel_unless_rgb_is_asked_for(root):
    data = CheXpert(root, labels=LABELS, image_size=10)
    image = data[0]["image"]
    assert data.channels == 1 and image.shape == (1, 10, 10)
    # 10 x 12 is centre-cropped to 10 x 10 without resampling: exact pixels.
    expected = torch.from_numpy(random_pixels(0, 10, 12, 1)[:, 1:11]).float() / 127.5 - 1.0
    torch.testing.assert_close(image[0], expected)
    rgb = CheXpert(root, labels=LABELS, image_size=10, channels=3)[0]["image"]
    torch.testing.assert_close(rgb, expected.expand(3, 10, 10))


def test_root_may_be_the_parent_folder(root):
    from_parent = CheXpert(root.parent, csv=str(root / "train.csv"))
    assert from_parent.files == CheXpert(root).files and len(from_parent) == len(ROWS)


def test_splits_keep_patients_apart_and_test_on_valid_csv(root):
    train, val, test = chexpert_splits(root, image_size=8, seed=3)
    assert len(train) + len(val) == len(ROWS) and len(test) == 2
    assert set(train.patients()).isdisjoint(val.patients())
    assert train.attribute_names == ["Cardiomegaly", "Edema"]  # observations in CSV order
    torch.testing.assert_close(test.labels, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_bad_inputs(root):
    with pytest.raises(ConfigError, match="uncertain-label policy"):
        CheXpert(root, labels=LABELS, uncertain="maybe")
    with pytest.raises(DataError, match=r"no column\(s\) \['Atelectasis'"):
        CheXpert(root, labels=["Atelectasis"])
    write_csv(root / "bare.csv", ["Path", "Sex"], [["CheXpert-v1.0-small/a.jpg", "Male"]])
    with pytest.raises(DataError, match="none of the CheXpert observation columns"):
        CheXpert(root, "bare.csv")
    _write(root, "odd.csv", rows=[(1, "2.0", "")])
    with pytest.raises(DataError, match=r"odd.csv, line 2, column 'Edema'.*must be 1, 0, -1"):
        CheXpert(root, "odd.csv", labels=LABELS)
    _write(root, "unsure.csv", rows=[(1, "-1.0", "")])
    with pytest.raises(DataError, match="no rows left"):
        CheXpert(root, "unsure.csv", labels=LABELS, uncertain="ignore")
