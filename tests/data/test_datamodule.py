import pytest
import torch

from cfgen.data.datamodule import AttributeDataModule
from cfgen.data.sources import SOURCES
from cfgen.errors import ConfigError, DataError


def _synthetic(**options) -> AttributeDataModule:
    sizes = dict(n_train=40, n_val=12, n_test=10, batch_size=16, image_size=16)
    return AttributeDataModule(**{**sizes, **options})


def test_synthetic_module_builds_splits_once_and_describes_them():
    module = _synthetic()
    module.setup("fit")
    train = module.train_dataset
    module.setup("test")
    assert module.train_dataset is train
    assert [len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)] == [
        40,
        12,
        10,
    ]
    assert module.attribute_names[module.target_index] == "Smiling"
    assert (module.channels, module.image_size) == (3, 16)


def test_loaders_shuffle_train_and_keep_order_elsewhere():
    module = _synthetic()
    module.setup()
    train_batches = list(module.train_dataloader())
    assert [len(batch["index"]) for batch in train_batches] == [16, 16]  # last partial dropped
    batch = train_batches[0]
    assert batch["image"].shape == (16, 3, 16, 16) and batch["labels"].shape[0] == 16
    assert batch["masks"].shape[:2] == (16, 6)
    test_indices = torch.cat([b["index"] for b in module.test_dataloader()])
    torch.testing.assert_close(test_indices, torch.arange(10))
    predict_indices = torch.cat([b["index"] for b in module.predict_dataloader()])
    torch.testing.assert_close(predict_indices, test_indices)


def test_small_train_split_still_gives_a_batch():
    module = _synthetic(n_train=5)
    module.setup()
    assert len(list(module.train_dataloader())) == 1


def test_confounding_reaches_the_train_split():
    module = _synthetic(n_train=400, confound_factor="glasses", confound_strength=1.0)
    module.setup()
    labels = module.train_dataset.labels
    glasses = module.attribute_names.index("Eyeglasses")
    torch.testing.assert_close(labels[:, glasses], labels[:, module.target_index])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": "imagenet"}, "unknown data source"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_fail_at_construction(options, message):
    with pytest.raises(ConfigError, match=message):
        _synthetic(**options)


def test_unknown_target_fails_at_setup():
    module = _synthetic(target="Young")
    with pytest.raises(ConfigError, match="Young"):
        module.setup()


def test_real_sources_need_a_root():
    for source in set(SOURCES) - {"synthetic"}:
        with pytest.raises(ConfigError, match="needs `root`"):
            AttributeDataModule(source=source).setup()


def test_datasets_before_setup_raise():
    with pytest.raises(RuntimeError, match="setup"):
        _ = _synthetic().train_dataset


def test_folder_source_reads_the_split_column(tmp_path):
    from tests.data.fakes import attribute_folder

    attribute_folder(tmp_path, ["train"] * 3 + ["val", "test"], [[1, 0]] * 5)
    module = AttributeDataModule(
        source="folder", root=str(tmp_path), image_size=8, batch_size=2, target="b"
    )
    module.setup()
    assert [len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)] == [
        3,
        1,
        1,
    ]
    assert module.attribute_names == ["a", "b"] and module.target_index == 1
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and module.channels == 3


def _users(root, **options) -> AttributeDataModule:
    from tests.data.fakes import user_folder

    user_folder(root, n=15, classes=3)
    return AttributeDataModule(source="folder", root=str(root), batch_size=4, **options)


def test_a_class_of_a_multi_class_column_is_a_target_and_grey_stays_grey(tmp_path):
    module = _users(tmp_path, target="digit=1", image_size=8)
    module.setup()
    assert module.attribute_names == ["digit=0", "digit=1", "digit=2", "smiling"]
    assert module.target_index == 1 and module.channels == 1
    assert module.class_names("digit=1") == ["digit=0", "digit=1", "digit=2"]
    assert module.class_names("smiling") is None
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 1, 8, 8) and batch["labels"].shape == (4, 4)


def test_targets_that_name_no_attribute_say_what_to_name(tmp_path):
    with pytest.raises(
        DataError, match=r"line 4, column 'digit': label '2' is not binary.*digit=2"
    ):
        _users(tmp_path / "a", target="digit").setup()
    without = _users(tmp_path / "b")
    without.setup()  # an oracle or an explainer of a classifier file needs no target
    with pytest.raises(ConfigError, match=r"no target.*\['smiling'\].*left out.*'digit'"):
        _ = without.target_index
    with pytest.raises(ConfigError, match=r"'digit=7' is not in the data.*COLUMN=VALUE"):
        _users(tmp_path / "c", target="digit=7").setup()


def test_unset_options_come_from_the_classifier_and_contradictions_fail(tmp_path):
    module = _users(tmp_path)
    facts = {"target": "digit=2", "image_size": 16, "in_channels": 3, "attribute_names": []}
    module.use_classifier(facts, "clf.pt")
    module.setup()
    assert (module.target, module.image_size, module.channels) == ("digit=2", 16, 3)
    assert module.train_dataset[0]["image"].shape == (3, 16, 16)
    clash = _users(tmp_path, target="smiling")
    clash.use_classifier(facts, "clf.pt")
    with pytest.raises(ConfigError, match=r"data.target is 'smiling' but the classifier clf.pt"):
        clash.setup()


def test_defaults_without_a_classifier():
    module = _synthetic(image_size=None)
    assert (module.target, module.image_size, module.channels) == ("Smiling", 32, 3)
    with pytest.raises(ConfigError, match="synthetic faces are RGB"):
        _synthetic(channels=1).setup()
    with pytest.raises(ConfigError, match="channels must be 1"):
        _synthetic(channels=2)
