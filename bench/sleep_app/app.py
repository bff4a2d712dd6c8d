"""A trial that only waits: the app of the coordination benchmark (``bench/coordination.py``).

Its trials use no CPU, so a sweep of it measures what the sweep itself costs per trial
(asking, the budget lock, the journal, the MLflow record, Hydra's job set-up) and how that
scales with the number of workers.

    python bench/sleep_app/app.py -m hydra.sweeper.n_jobs=4 sleep=2
"""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    time.sleep(float(cfg.sleep))
    return float(cfg.x) ** 2


if __name__ == "__main__":
    main()
