"""python train.py experiment=<name> [Hydra overrides]: thin entry point, the logic lives in
deid.training.train."""

import sys

import hydra
from omegaconf import DictConfig

from deid.hydra_entry import check_choices, run_task
from deid.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_task(train, cfg)


if __name__ == "__main__":
    run_task(lambda argv: check_choices(argv, "experiment"), sys.argv[1:])  # a typo: one line
    main()
