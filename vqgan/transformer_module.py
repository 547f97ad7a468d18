"""Training module of the segmentation-conditioned transformer (taming's Net2NetTransformer).

Both VQ stages come from checkpoints given by path (`first_stage`, `cond_stage`: a training
run's `last.ckpt` or a converted official `.pt`, read with `vqgan.load_checkpoint`), frozen
and kept in eval mode also when Lightning calls `train()`. Per batch: condition tokens (the
condition stage's indices of the one-hot label map) and image tokens (the first stage's
indices of the image), both encoded in float32 without gradients and flattened in raster
order; the sequence is condition tokens then image tokens, in ONE shared token table (taming
adds no offset); the transformer sees the sequence minus its last token, with image tokens
replaced by random ones with probability 1 - `pkeep`, and is trained with cross-entropy on
the clean image tokens only. AdamW (betas (0.9, 0.95)) with weight decay on the Linear
weights only (not on biases, LayerNorms, the token table or the positions), as in taming.

The checkpoint's `deid_vqgan` bundle holds all three networks, so the anonymizer loads one
file: `vqgan.load_checkpoint(run/checkpoints/last.ckpt)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deid.errors import DeidError, MissingWeightError
from deid.sampling import draw_seed
from vqgan import losses
from vqgan.checkpoint import load_checkpoint
from vqgan.data import colorize, onehot
from vqgan.nets import GPT, GPTConfig, VQAutoencoder
from vqgan.stage_module import StageModule, optimizer_config

ADAMW = {
    "_target_": "torch.optim.AdamW",
    "lr": 4.5e-6,
    "betas": [0.9, 0.95],
    "weight_decay": 0.01,
    "scale_lr": True,
}
DEFAULT_SAMPLE = {"top_k": 100, "temperature": 1.0, "num_samples": 2}
STAGE_COMMANDS = {
    "first_stage": "python train.py experiment=vqgan_demo_first (or vqgan_coco)",
    "cond_stage": "python train.py experiment=vqgan_demo_cond (or vqgan_coco_cond)",
}


def load_stage(path: str | None, stage: str) -> tuple[VQAutoencoder, dict[str, Any]]:
    """The `stage` network of the checkpoint at `path`, frozen, in eval mode, and the
    checkpoint's meta (e.g. the first stage's perceptual kind)."""
    if not path:
        raise DeidError(
            f"the transformer needs its {stage.replace('_', ' ')}: add module.{stage}=<run>/"
            f"checkpoints/last.ckpt (train it with {STAGE_COMMANDS[stage]}) or a converted "
            "official checkpoint (python -m vqgan.convert_official)"
        )
    if not Path(path).is_file():
        raise MissingWeightError(
            f"module.{stage}={path}: no such checkpoint; train it first with "
            f"{STAGE_COMMANDS[stage]}, or pass module.{stage}=<its run>/checkpoints/last.ckpt"
        )
    models = load_checkpoint(path, stages=(stage,))
    network = getattr(models, stage)
    if network is None:
        raise DeidError(f"module.{stage}={path}: that checkpoint holds no {stage}")
    network.requires_grad_(False)
    return network.eval(), models.meta


def param_groups(gpt: GPT, weight_decay: float) -> list[dict[str, Any]]:
    """taming's split: decay on nn.Linear weights; none on biases, LayerNorm and Embedding
    weights and the position embedding."""
    decay = {f"{m}.weight" for m, mod in gpt.named_modules() if isinstance(mod, nn.Linear)}
    named = dict(gpt.named_parameters())
    return [
        {"params": [named[n] for n in sorted(named) if n in decay], "weight_decay": weight_decay},
        {"params": [named[n] for n in sorted(named) if n not in decay], "weight_decay": 0.0},
    ]


@torch.no_grad()
def stage_indices(stage: VQAutoencoder, x: Tensor) -> Tensor:
    """Token indices [B, h, w] of a frozen VQ stage, computed in float32 (also under autocast)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return stage.encode_to_indices(x.float())


class CondTransformerModule(StageModule):
    """The conditional transformer (module docstring). Batches need `image` and `labels`."""

    def __init__(
        self,
        first_stage: str | None = None,
        cond_stage: str | None = None,
        image_size: int = 256,
        num_labels: int = 183,
        batch_size: int = 8,
        crop: Mapping[str, Any] | None = None,
        transformer: Mapping[str, Any] | None = None,
        pkeep: float = 1.0,
        optimizer: Mapping[str, Any] | None = None,
        sample: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """`first_stage`, `cond_stage`: checkpoint paths; `image_size`, `num_labels`,
        `batch_size`, `crop` come from the datamodule; `transformer`: GPTConfig sizes
        (`vocab_size` null = the larger codebook, `block_size` null = both token grids)."""
        super().__init__(
            image_size, num_labels, batch_size, crop, optimizer_config(ADAMW, optimizer), seed
        )
        self.save_hyperparameters()
        self.first_stage, first_meta = load_stage(first_stage, "first_stage")
        self.cond_stage, _ = load_stage(cond_stage, "cond_stage")
        # what the first stage was trained with, carried into this checkpoint's bundle
        self.first_stage_perceptual = str(first_meta.get("perceptual", "unknown"))
        self.pkeep = float(pkeep)
        self.sample_config = {**DEFAULT_SAMPLE, **dict(sample or {})}
        grid, cond_grid = self._grid(self.first_stage), self._grid(self.cond_stage)
        if grid != cond_grid:
            raise DeidError(
                f"at {image_size} px the first stage gives {grid[0]}x{grid[1]} tokens and the "
                f"condition stage {cond_grid[0]}x{cond_grid[1]}: they must match (same "
                "downsampling factor)"
            )
        if self.cond_stage.config.in_channels != self.num_labels:
            raise DeidError(
                f"the condition stage takes {self.cond_stage.config.in_channels} labels, the "
                f"data has {self.num_labels} (datamodule.num_labels / preprocess.labels)"
            )
        self.token_grid = grid
        tokens = grid[0] * grid[1]
        values = dict(transformer or {})
        codes = max(self.first_stage.config.n_embed, self.cond_stage.config.n_embed)
        if values.get("vocab_size") is None:
            values["vocab_size"] = codes
        if values.get("block_size") is None:
            values["block_size"] = 2 * tokens
        config = GPTConfig.from_dict(values)
        if config.vocab_size < codes:
            raise DeidError(
                f"transformer.vocab_size {config.vocab_size} < {codes} codes of the stages "
                "(condition and image tokens share one table)"
            )
        if 2 * tokens - 1 > config.block_size:
            raise DeidError(
                f"transformer.block_size {config.block_size} < {2 * tokens - 1} positions "
                f"({tokens} condition + {tokens} image tokens, minus one)"
            )
        self.transformer = GPT(config)

    def _grid(self, stage: VQAutoencoder) -> tuple[int, int]:
        side = self.image_size // stage.config.downsampling
        return side, side

    def train(self, mode: bool = True) -> CondTransformerModule:
        """Lightning switches modes around every loop: the frozen stages stay in eval."""
        super().train(mode)
        self.first_stage.eval()
        self.cond_stage.eval()
        return self

    # ------------------------------------------------------------------ tokens and loss
    def encode(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(condition tokens, image tokens), each long [B, h*w] in raster order."""
        cond = stage_indices(self.cond_stage, onehot(batch["labels"], self.num_labels))
        image = stage_indices(self.first_stage, batch["image"])
        return cond.flatten(1), image.flatten(1)

    def token_loss(
        self, cond: Tensor, image: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on the image tokens, after pkeep corruption of the input copy."""
        vocab = self.transformer.config.vocab_size
        inputs = losses.corrupt_tokens(image, self.pkeep, vocab, generator)
        logits = self.transformer(losses.transformer_inputs(cond, inputs))
        loss, logs = losses.transformer_loss(logits, image, cond.shape[1])
        predicted = logits[:, cond.shape[1] - 1 :].detach().argmax(-1)
        logs["token_accuracy"] = (predicted == image).float().mean()
        return loss, logs

    def corruption_generator(self, device: torch.device) -> torch.Generator:
        """pkeep draws from (seed, step): a resumed run corrupts the same tokens."""
        return torch.Generator(device=device).manual_seed(draw_seed(self.seed, self.step, 0x9EE9))

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        cond, image = self.encode(batch)
        generator = self.corruption_generator(image.device)
        step_logs = self.optimize(
            self.optimizers(), lambda: self.token_loss(cond, image, generator)
        )
        self.finish_step({f"transformer/{k}": v for k, v in step_logs.items()}, len(image))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        decay = float(self.optimizer_config.get("weight_decay", 0.0))
        return self.build_optimizer(param_groups(self.transformer, decay))

    # ------------------------------------------------------------------ checkpoints, grids
    def bundle_stages(self) -> dict[str, nn.Module]:
        return {
            "first_stage": self.first_stage,
            "cond_stage": self.cond_stage,
            "transformer": self.transformer,
        }

    def bundle_meta(self) -> dict[str, Any]:
        return {
            **super().bundle_meta(),
            "perceptual": self.first_stage_perceptual,  # the first stage's training
            "token_grid": list(self.token_grid),
            "pkeep": self.pkeep,
            "sample": {k: self.sample_config[k] for k in ("top_k", "temperature")},
            "stage_checkpoints": {
                "first_stage": self.hparams.first_stage,
                "cond_stage": self.hparams.cond_stage,
            },
        }

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor]) -> Tensor:
        """[3, H, W] in [-1, 1]; rows: condition | image | its token reconstruction | one row
        per sample seed (image tokens sampled from the condition tokens alone)."""
        from vqgan.sampling import sample_fast

        was_training = self.training
        self.eval()
        batch = {k: v.to(self.device) for k, v in batch.items()}
        cond, image = self.encode(batch)
        h, w = self.token_grid
        rows = [colorize(batch["labels"], self.num_labels), batch["image"]]
        rows.append(self.first_stage.decode_indices(image.view(-1, h, w)))
        count = int(self.sample_config["num_samples"])
        for k in range(count):
            seeds = [draw_seed(self.seed, k, i) for i in range(len(image))]
            tokens = sample_fast(
                self.transformer,
                cond.view(-1, h, w),
                seeds=seeds,
                top_k=self.sample_config["top_k"],
                temperature=float(self.sample_config["temperature"]),
            )
            # the shared table may be larger than the first stage's codebook (taming's COCO
            # model: 8192 both); tokens it never saw as targets are not decodable
            tokens = tokens.clamp(max=self.first_stage.config.n_embed - 1)
            rows.append(self.first_stage.decode_indices(tokens))
        self.train(was_training)
        return torch.cat([torch.cat(list(row.clamp(-1, 1)), dim=2) for row in rows], dim=1)
