"""taming's PatchGAN discriminator (pix2pix NLayerDiscriminator with BatchNorm).

Layers live in one `nn.Sequential` called `main`, so the official `loss.discriminator.main.N`
weights load by key. Output: one logit per overlapping patch, [B, 1, h', w'].
"""

from __future__ import annotations

from torch import Tensor, nn

from vqgan.nets.config import DiscriminatorConfig


def init_discriminator_weights(module: nn.Module) -> None:
    """taming's init: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.constant_(module.bias, 0.0)


class NLayerDiscriminator(nn.Module):
    """4x4 convs: stride 2 (no norm), n_layers - 1 more stride-2 ones, a stride-1 one, a 1-ch head."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        self.config = config
        ndf = config.ndf
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, config.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < config.n_layers else 1
            layers += [
                nn.Conv2d(
                    ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=False
                ),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(init_discriminator_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)
