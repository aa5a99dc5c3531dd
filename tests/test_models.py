"""Network choice from the spacing, shapes, and the prior-residual wrapper."""

from __future__ import annotations

import pytest
import torch

from napari_sparseseg.models import NetworkSpec, build_network, choose_network, default_spec


def test_choose_network_from_spacing_and_slices() -> None:
    assert choose_network((8.0, 1.5, 1.5), (20, 256, 256)) == 2  # thick slices
    assert choose_network((1.0, 1.0, 1.0), (35, 50, 35)) == 3  # isotropic
    assert choose_network((1.0, 1.0, 1.0), (10, 256, 216)) == 2  # spacing lost, few slices (ACDC copy)
    assert choose_network((1.0, 1.0, 1.0), (35, 50, 35), "unet2d") == 2
    assert choose_network((8.0, 1.0, 1.0), (20, 50, 35), "unet3d") == 3
    with pytest.raises(ValueError, match="unknown network"):
        choose_network((1, 1, 1), (4, 4, 4), "vnet")


@pytest.mark.parametrize("dims,shape", [(2, (2, 5, 40, 24)), (3, (1, 5, 16, 24, 8))])
def test_forward_shapes(dims: int, shape: tuple[int, ...]) -> None:
    net = build_network(default_spec(dims, 5, 4))
    assert net(torch.randn(*shape)).shape == (shape[0], 4, *shape[2:])


def test_prior_residual_starts_from_the_prior() -> None:
    spec = default_spec(2, 4, 3)
    spec.prior_residual = True
    net = build_network(spec).eval()
    for p in net.net.parameters():  # a silent U-Net: the output is the prior's log-probabilities
        torch.nn.init.zeros_(p)
    prior = torch.softmax(torch.randn(2, 3, 16, 16), 1)
    x = torch.cat([torch.randn(2, 1, 16, 16), prior], 1)
    out = net(x)
    assert torch.equal(out.argmax(1), prior.argmax(1))
    with pytest.raises(ValueError, match="prior_residual"):
        bad = default_spec(2, 2, 3)
        bad.prior_residual = True
        build_network(bad)


def test_spec_round_trip() -> None:
    spec = default_spec(3, 1, 2, channels=(4, 8, 16))
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
