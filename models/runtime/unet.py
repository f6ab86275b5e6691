"""A compact 2-D U-Net for cardiac MR segmentation (T1 maps now, LGE later).

Encoder: per level two 3x3 convolutions with batch normalisation and ReLU, then 2x2 max
pooling; the number of channels doubles per level.  Decoder: 2x2 transposed convolution,
concatenation with the encoder features of the same level (skip connection), two 3x3
convolutions.  Spatial dropout before the bottleneck and in the decoder makes Monte Carlo
dropout possible for uncertainty.  The output is one logit per class (softmax outside).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["UNet", "UNetConfig", "count_parameters"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet`.

    Attributes
    ----------
    in_channels
        Input channels (1 for a T1 map; 2 for e.g. LGE + cine).
    n_classes
        Output classes (logits).
    base_channels
        Channels at the first level; doubled at every deeper level.
    depth
        Number of pooling steps (resolution levels = ``depth + 1``).
    dropout
        Spatial dropout probability in the bottleneck and the decoder.
    """

    in_channels: int = 1
    n_classes: int = 4
    base_channels: int = 16
    depth: int = 3
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """2-D U-Net returning class logits of the input's spatial size.

    The input height and width must be divisible by ``2 ** config.depth``.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        widths = [c.base_channels * 2**level for level in range(c.depth + 1)]
        self.encoders = nn.ModuleList()
        previous = c.in_channels
        for width in widths[:-1]:
            self.encoders.append(_double_conv(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(nn.Dropout2d(c.dropout), _double_conv(previous,
                                                                              widths[-1]))
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        previous = widths[-1]
        for width in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(previous, width, 2, stride=2))
            self.decoders.append(nn.Sequential(nn.Dropout2d(c.dropout),
                                               _double_conv(2 * width, width)))
            previous = width
        self.head = nn.Conv2d(previous, c.n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes, H, W) of inputs (batch, in_channels, H, W)."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips),
                                           strict=True):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        logits: torch.Tensor = self.head(x)
        return logits

    def enable_mc_dropout(self) -> None:
        """Evaluation mode with the dropout layers sampling (Monte Carlo dropout)."""
        self.eval()
        for module in self.modules():
            if isinstance(module, nn.Dropout2d):
                module.train()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
