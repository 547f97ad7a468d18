"""Hydra overrides that shrink CIAGAN to a few thousand parameters at 32 px, for fast tests of
the real training code. `++` adds or overrides, so they apply to the plain CIAGAN config and to
every experiment alike."""

# The CIAGAN groups with their own defaults and no experiment's changes (train.yaml names no
# method, so tests of the module's code add them).
PLAIN_CIAGAN = ["+datamodule=ciagan", "+module=ciagan", "+callbacks=ciagan"]

TINY_GAN = [
    "datamodule.image_size=32",
    "datamodule.batch_size=2",
    "datamodule.num_workers=0",
    "module.generator.channels=[8,16,16]",
    "module.generator.up_channels=[16,8,8]",
    "module.generator.bottleneck_channels=16",
    "module.generator.num_res_blocks=1",
    "++module.generator.id_hidden=[32,32]",
    "++module.generator.id_channels=[8,16]",
    "module.discriminator.channels=[8,16,16]",
    "module.discriminator.hidden=32",
    "module.identity.channels=[8,16,16]",
    "module.identity.hidden=32",
    "module.identity.embedding_dim=16",
]
