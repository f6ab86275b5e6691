"""Test-time dihedral views (models.runtime.segmentation.predict_views): every view mapped back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.runtime.segmentation import DIHEDRAL_VIEWS, predict_passes, predict_views


class _PixelWise(torch.nn.Module):
    """A 1 x 1 convolution: its output at a pixel depends on that pixel alone, so every
    dihedral view mapped back must give the same probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[1.0]]], [[[-2.0]]], [[[0.5]]]]))
            torch.nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _RowReader(torch.nn.Module):
    """Class 1 where the pixel lies in the top half of what it is shown: not equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, g, _ = x.shape
        top = torch.zeros((n, 1, g, g))
        top[:, :, : g // 2] = 10.0
        return torch.cat([torch.zeros_like(top), top], dim=1)


def test_views_of_a_pixelwise_network_agree_and_start_as_the_mirror_passes() -> None:
    grid = np.random.default_rng(0).normal(size=(1, 12, 12)).astype(np.float32)
    model = _PixelWise().eval()
    passes = predict_views(model, grid, 8)
    assert passes.shape == (8, 3, 12, 12)
    for k in range(1, 8):
        np.testing.assert_allclose(passes[k], passes[0], atol=1e-6)
    np.testing.assert_allclose(passes[:2], predict_passes(model, grid, True), atol=1e-6)


def test_each_view_is_mapped_back_to_where_its_pixels_came_from() -> None:
    grid = np.zeros((1, 8, 8), dtype=np.float32)
    passes = predict_views(_RowReader().eval(), grid, 8)
    top = passes[:, 1] > 0.5
    # identity and left-right mirror: top rows; up-down mirrors: bottom rows;
    # transposed views: left or right columns.
    assert top[0, :4].all() and top[1, :4].all() and not top[0, 4:].any()
    assert top[2, 4:].all() and top[3, 4:].all()
    assert top[4][:, :4].all() and top[5][:, :4].all() and top[6][:, 4:].all()
    assert top[7][:, 4:].all()
    with pytest.raises(ValueError):
        predict_views(_RowReader(), grid, 3)
    assert DIHEDRAL_VIEWS == (1, 2, 4, 8)
