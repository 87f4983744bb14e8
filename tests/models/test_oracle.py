import pytest
import torch

from cfgen.errors import CheckpointError, ConfigError
from cfgen.evaluate.realism import domain_features, fid
from cfgen.io import save_bundle
from cfgen.models.oracle import (
    BUNDLE_KIND,
    ORACLES,
    FactorOracle,
    Oracle,
    build_oracle,
    load_oracle,
)

NAMES = ["smile", "glasses", "face_x"]


@pytest.mark.parametrize("size", [16, 32, 64])
def test_outputs_are_factors_in_unit_range_and_features_have_num_features(size):
    oracle = FactorOracle(NAMES, width=8, num_features=24).eval()
    images = torch.rand(5, 3, size, size) * 2 - 1
    factors = oracle(images)
    assert factors.shape == (5, 3) and oracle.features(images).shape == (5, 24)
    assert bool(((factors > 0) & (factors < 1)).all())
    torch.testing.assert_close(factors, torch.sigmoid(oracle.head(oracle.features(images))))


def test_bundle_round_trip_rebuilds_the_same_oracle(tmp_path):
    oracle = FactorOracle(NAMES, in_channels=1, width=8, num_features=16).eval()
    path = save_bundle(tmp_path / "oracle.pt", BUNDLE_KIND, oracle.config(), oracle.state_dict())
    loaded = load_oracle(path)
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(images), oracle(images))
    assert loaded.factor_names == NAMES and loaded.kind == "factors" and not loaded.training
    assert not any(parameter.requires_grad for parameter in loaded.parameters())


def test_load_refuses_another_kind_of_model(tmp_path):
    oracle = FactorOracle(NAMES, width=8)
    path = save_bundle(tmp_path / "classifier.pt", "classifier", oracle.config(), {})
    with pytest.raises(CheckpointError, match="expected 'oracle'"):
        load_oracle(path)


def test_trunk_is_a_torchmetrics_feature_extractor_for_fid():
    oracle = FactorOracle(NAMES, width=8, num_features=16)
    features = domain_features(oracle)
    assert features.num_features == 16 and not features.training
    images = torch.rand(12, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(fid(images, images, features), 0.0, atol=1e-6, rtol=0)
    assert fid(images, -images, features) > 0


def test_both_kinds_share_one_interface_and_load_back_as_their_kind(tmp_path):
    for kind, names in (("factors", NAMES), ("attributes", ["digit=0", "digit=1", "Smiling"])):
        oracle = build_oracle(kind, names, in_channels=1, width=8, num_features=16).eval()
        path = save_bundle(
            tmp_path / f"{kind}.pt", BUNDLE_KIND, oracle.config(), oracle.state_dict()
        )
        loaded = load_oracle(path)
        assert type(loaded) is ORACLES[kind] and loaded.kind == kind
        assert loaded.output_names == names
        images = torch.rand(3, 1, 16, 16) * 2 - 1
        outputs = loaded(images)
        assert outputs.shape == (3, len(names)) and loaded.features(images).shape == (3, 16)
        torch.testing.assert_close(outputs, oracle(images))
    assert loaded.attribute_names == loaded.output_names
    assert isinstance(loaded, Oracle) and not any(p.requires_grad for p in loaded.parameters())


def test_bundles_written_before_attribute_oracles_load_as_factor_oracles(tmp_path):
    oracle = FactorOracle(NAMES, width=8, num_features=16).eval()
    config = {key: value for key, value in oracle.config().items() if key != "output_names"}
    del config["kind"]
    config["factor_names"] = NAMES  # the old layout
    path = save_bundle(tmp_path / "old.pt", BUNDLE_KIND, config, oracle.state_dict())
    loaded = load_oracle(path)
    assert isinstance(loaded, FactorOracle) and loaded.factor_names == NAMES
    torch.testing.assert_close(loaded(torch.zeros(1, 3, 16, 16)), oracle(torch.zeros(1, 3, 16, 16)))


def test_unknown_oracle_kinds_are_refused(tmp_path):
    oracle = FactorOracle(NAMES, width=8)
    path = save_bundle(tmp_path / "o.pt", BUNDLE_KIND, {**oracle.config(), "kind": "faces"}, {})
    with pytest.raises(CheckpointError, match="unknown kind 'faces'"):
        load_oracle(path)
    with pytest.raises(ConfigError, match="unknown oracle kind 'faces'"):
        build_oracle("faces", NAMES)
