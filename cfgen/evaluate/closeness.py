"""How close a counterfactual stays to its query: L1, SSIM and LPIPS.

Images are (N, C, H, W) in [-1, 1]; every function returns one value per pair, (N,). L1 and SSIM
can be restricted to where the change should NOT happen: pass `keep` (N, H, W) in [0, 1], e.g.
`1 - masks[:, region]` for the explained factor's region of the synthetic world; pixels are then
weighted by `keep`, so a perfect explainer scores L1 = 0 and SSIM = 1 outside the region.

LPIPS uses the real `lpips` package (its shipped linear heads) with a torchvision backbone whose
ImageNet weights are read from the local torch cache; cfgen never downloads them. Missing weights
raise `WeightsMissingError` naming the file to place.
"""

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from cfgen.errors import WeightsMissingError
from cfgen.io import safe_torch_load

# lpips trunk name -> torchvision weights enum holding the ImageNet weights' file name.
LPIPS_BACKBONES = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
}


def _check_pair(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"images must be two (N, C, H, W) of one shape, got {a.shape}, {b.shape}")
    if keep is not None and keep.shape != (a.shape[0], *a.shape[2:]):
        raise ValueError(
            f"keep mask must be (N, H, W) = {(a.shape[0], *a.shape[2:])}, got {tuple(keep.shape)}"
        )


def _weighted_mean(values: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean of `values` (N, C, H, W), weighted by `keep` (N, H, W) when given -> (N,)."""
    if keep is None:
        return values.flatten(1).mean(dim=1)
    weights = keep[:, None].expand_as(values).to(values)
    return (values * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1).clamp_min(1e-8)


def l1_distance(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute pixel difference per pair, (N,), optionally only where `keep` (N, H, W)."""
    _check_pair(a, b, keep)
    return _weighted_mean((a - b).abs(), keep)


def ssim(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity per pair, (N,) (1 = identical), optionally only where `keep`.

    The SSIM map (11x11 Gaussian window, torchmetrics, same size as the images) is averaged with
    `keep` as weights; without `keep` this is torchmetrics' per-image SSIM.
    """
    _check_pair(a, b, keep)
    _, ssim_map = structural_similarity_index_measure(
        a, b, data_range=2.0, reduction="none", return_full_image=True
    )
    return _weighted_mean(ssim_map, keep)


def lpips_weights_file(net: str = "alex") -> tuple[Path, str]:
    """Where the ImageNet weights of the LPIPS trunk `net` must lie (the torch hub cache), and
    the address they are published at."""
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS trunk {net!r}; choose one of {sorted(LPIPS_BACKBONES)}")
    import torchvision.models

    weights = getattr(torchvision.models, LPIPS_BACKBONES[net]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name, weights.url


def _trunk_state(lpips_model: nn.Module, imagenet_state: dict) -> dict:
    """torchvision `features.<i>.*` weights renamed to the lpips trunk's `slice<k>.<i>.*`."""
    state = {}
    for name in lpips_model.net.state_dict():
        layer_and_param = name.split(".", 1)[1]
        state[name] = imagenet_state[f"features.{layer_and_param}"]
    return state


def build_lpips(net: str = "alex", backbone: str = "imagenet") -> nn.Module:
    """The LPIPS metric (lpips package, v0.1 linear heads) on CPU, frozen, in eval mode.

    backbone: "imagenet" loads the trunk's ImageNet weights from the torch cache (the real
    LPIPS); "random" keeps a randomly initialised trunk (for tests, never for reported numbers).
    """
    import lpips

    if backbone not in {"imagenet", "random"}:
        raise ValueError(f"backbone must be 'imagenet' or 'random', got {backbone!r}")
    path, url = lpips_weights_file(net)
    if backbone == "imagenet" and not path.is_file():
        raise WeightsMissingError(
            f"LPIPS needs the ImageNet weights of its {net} trunk at {path}. Download {url} on a "
            f"machine with internet access and copy it there (cfgen never downloads weights)"
        )
    # pnet_rand=True: lpips would otherwise ask torchvision to download the trunk itself.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if backbone == "imagenet":
        model.net.load_state_dict(_trunk_state(model, safe_torch_load(path)))
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips_distance(
    metric: nn.Module, a: torch.Tensor, b: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """LPIPS per pair, (N,), for images in [-1, 1] (0 = identical), with `build_lpips()`."""
    _check_pair(a, b, None)
    metric = metric.to(a.device)
    distances = [
        metric(a[start : start + batch_size], b[start : start + batch_size]).flatten()
        for start in range(0, a.shape[0], batch_size)
    ]
    return torch.cat(distances)
