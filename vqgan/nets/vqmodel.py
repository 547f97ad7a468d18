"""The VQ autoencoder: encoder -> quant_conv -> quantize -> post_quant_conv -> decoder.

One class serves both stages of the method: the image stage (3 channels in and out) and the
segmentation condition stage (one-hot label maps in, label logits out). Attribute names are
taming's `VQModel` ones, so `first_stage_model.*` / `cond_stage_model.*` weights map by key.
"""

from __future__ import annotations

from torch import Tensor, nn

from vqgan.nets.autoencoder import Decoder, Encoder
from vqgan.nets.config import VQConfig
from vqgan.nets.quantize import Quantized, VectorQuantizer


class VQAutoencoder(nn.Module):
    """A VQGAN first stage (or segmentation condition stage) built from a `VQConfig`."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(
            config.n_embed, config.embed_dim, beta=config.beta, legacy=config.legacy_beta
        )
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, x: Tensor) -> Quantized:
        """Input [B, in_channels, H, W] -> quantized latents, loss, indices and usage."""
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: Tensor) -> Tensor:
        """Quantized latents [B, embed_dim, h, w] -> output [B, out_channels, h*f, w*f]."""
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: Tensor) -> tuple[Tensor, Quantized]:
        quantized = self.encode(x)
        return self.decode(quantized.z_q), quantized

    def encode_to_indices(self, x: Tensor) -> Tensor:
        """Float input [B, in_channels, H, W] (images in [-1, 1], or one-hot labels) -> long [B, h, w]."""
        return self.encode(x).indices

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Long code indices [B, h, w] -> output [B, out_channels, h*f, w*f]."""
        return self.decode(self.quantize.embed(indices))

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last conv weight: where taming measures the adaptive GAN weight."""
        return self.decoder.conv_out.weight
