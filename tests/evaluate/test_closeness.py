from pathlib import Path

import lpips
import pytest
import torch
import torchvision
from torchmetrics.functional.image import structural_similarity_index_measure

from cfgen.errors import WeightsMissingError
from cfgen.evaluate.closeness import build_lpips, l1_distance, lpips_distance, ssim


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size) * 2 - 1


def test_l1_full_and_outside_the_changed_region():
    query = _images()
    counterfactual = query.clone()
    counterfactual[:, :, :8, :8] += 0.5  # a change on 1/16 of the image
    region = torch.zeros(3, 32, 32)
    region[:, :8, :8] = 1
    torch.testing.assert_close(l1_distance(query, counterfactual), torch.full((3,), 0.5 / 16))
    torch.testing.assert_close(l1_distance(query, counterfactual, keep=1 - region), torch.zeros(3))
    torch.testing.assert_close(
        l1_distance(query, counterfactual, keep=region), torch.full((3,), 0.5)
    )


def test_ssim_matches_torchmetrics_and_ignores_changes_outside_keep():
    query, other = _images(), _images()
    reference = structural_similarity_index_measure(query, other, data_range=2.0, reduction="none")
    torch.testing.assert_close(ssim(query, other), reference)
    torch.testing.assert_close(ssim(query, other, keep=torch.ones(3, 32, 32)), reference)
    torch.testing.assert_close(ssim(query, query), torch.ones(3))
    counterfactual = query.clone()
    counterfactual[:, :, :, :4] = -counterfactual[:, :, :, :4]  # change the 4 left columns
    keep = torch.zeros(3, 32, 32)
    keep[:, :, 16:] = 1  # far beyond the 5-pixel reach of the 11x11 window
    torch.testing.assert_close(ssim(query, counterfactual, keep), torch.ones(3))
    assert (ssim(query, counterfactual) < 0.95).all()


def test_mask_shape_is_checked():
    with pytest.raises(ValueError, match="keep mask must be"):
        l1_distance(_images(), _images(), keep=torch.ones(3, 16, 16))


def test_lpips_with_random_backbone_is_a_distance():
    metric = build_lpips(backbone="random")
    a, b = _images(), _images()
    torch.testing.assert_close(lpips_distance(metric, a, a), torch.zeros(3))
    torch.testing.assert_close(lpips_distance(metric, a, b), lpips_distance(metric, b, a))
    assert (lpips_distance(metric, a, b, batch_size=2) > 0).all()


@pytest.fixture
def alexnet_in_cache(tmp_path, monkeypatch) -> dict:
    """A torch cache holding a (randomly initialised) AlexNet as the trunk's ImageNet file."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    state = torchvision.models.alexnet().state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth")
    return state


def test_lpips_equals_the_lpips_package_with_the_same_trunk(alexnet_in_cache, monkeypatch):
    metric = build_lpips()
    # The reference: lpips.LPIPS building its own trunk from a torchvision AlexNet that holds
    # the same weights (lpips slices it itself), with its own shipped linear heads.
    trunk = torchvision.models.alexnet()
    trunk.load_state_dict(alexnet_in_cache)
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda **kwargs: trunk)
    reference = lpips.LPIPS(net="alex", verbose=False).eval()
    a, b = _images(4), _images(4)
    with torch.no_grad():
        expected = reference(a, b).flatten()
    torch.testing.assert_close(lpips_distance(metric, a, b, batch_size=3), expected)
    assert (expected > 0).all()


def test_lpips_loads_the_linear_heads_shipped_with_the_lpips_package(alexnet_in_cache):
    shipped = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth",
        map_location="cpu",
        weights_only=True,
    )
    state = build_lpips().state_dict()
    assert len(shipped) == 5  # one 1x1 conv per AlexNet stage
    for name, value in shipped.items():
        torch.testing.assert_close(state[name], value, msg=name)
    assert all(bool((value >= 0).all()) for value in shipped.values())  # trained heads, not init


def test_lpips_without_cached_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(WeightsMissingError, match="alexnet-owt-7be5be79.pth") as error:
        build_lpips()
    assert str(expected) in str(error.value)


def test_lpips_loads_the_trunk_from_the_torch_cache(alexnet_in_cache):
    state = alexnet_in_cache
    metric = build_lpips()
    torch.testing.assert_close(
        metric.net.state_dict()["slice1.0.weight"], state["features.0.weight"]
    )
    torch.testing.assert_close(metric.net.state_dict()["slice5.10.bias"], state["features.10.bias"])
