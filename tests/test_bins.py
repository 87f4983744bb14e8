import torch

from cfgen.bins import bin_target, posterior_to_bin


def test_posterior_to_bin_edges():
    posterior = torch.tensor([0.0, 0.099, 0.1, 0.55, 0.999, 1.0])
    torch.testing.assert_close(posterior_to_bin(posterior, 10), torch.tensor([0, 0, 1, 5, 9, 9]))


def test_bin_targets():
    bins = torch.tensor([0, 4, 9])
    torch.testing.assert_close(bin_target(bins, 10, "centre"), torch.tensor([0.05, 0.45, 0.95]))
    torch.testing.assert_close(bin_target(bins, 10, "lower"), torch.tensor([0.0, 0.4, 0.9]))
