"""python evaluate.py [Hydra overrides]: thin entry point, the logic lives in deid_eval.suite.evaluate."""

import hydra
from omegaconf import DictConfig

from deid.hydra_entry import run_task
from deid_eval.suite import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
