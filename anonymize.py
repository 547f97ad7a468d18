"""python anonymize.py [Hydra overrides]: thin entry point, the logic lives in deid.anonymizers.runner.anonymize."""

import hydra
from omegaconf import DictConfig

from deid.anonymizers.runner import anonymize
from deid.hydra_entry import check_overrides, run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="anonymize")
def main(cfg: DictConfig) -> None:
    run_task(anonymize, cfg)


if __name__ == "__main__":
    import sys

    check_overrides("anonymize", sys.argv[1:])  # a mistyped key=SECRET must not be echoed
    main()
