"""The run every fault test injects into: tiny, seeded, a checkpoint every epoch."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetflow.config import ExperimentConfig, parse_config

EPOCHS = 4
EVERY_EPOCHS = 1  # one checkpoint interval, in epochs
DICE_TOLERANCE = 0.01  # the bound between a faulted and an uninterrupted run
# For faults that must land mid-run: this model trains ~0.5 s an epoch here (the default
# fault model trains all its epochs in 0.3 s, so on a quiet machine a kill came too late).
SLOW_MODEL = {"preset": "unet", "base_channels": 32, "depth": 3}
# Ray Train records a checkpoint (what a restart resumes from) when its controller next
# polls the workers, every 2 s by default; every 0.1 s here, as minute-long epochs would.
PROMPT_RECORDING = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}


def fit_config(
    data: str | None = None, epochs: int = EPOCHS, **checkpoint: Any
) -> ExperimentConfig:
    """The fault tests' config; `checkpoint` overrides `checkpoint.*` settings."""
    return parse_config(
        {
            "name": "faults",
            **({"data": {"path": data}} if data else {}),
            "plan": False,
            "model": {"preset": "unet", "base_channels": 4, "depth": 2},
            "train": {
                "epochs": epochs,
                "batch_size": 8,
                "seed": 3,
                "early_stopping": {"enabled": False},
            },
            "scaling": {"num_workers": 1},
            # Every checkpoint kept: the test reads which epochs were written.
            "checkpoint": {"every_epochs": EVERY_EPOCHS, "num_to_keep": epochs, **checkpoint},
        }
    )


def final_dice(outcome: Any) -> float:
    """val_dice of the last epoch of a `RayTrainOutcome`."""
    return float(outcome.history[-1]["val_dice"])


def intervals_lost(last_saved_at_fault: int, resumed_from: int) -> float:
    """Checkpoint intervals trained twice after a restart.

    The epoch in flight when the worker group failed is trained again (one interval;
    the group may fail a few epochs after the fault, while the fault propagates), plus
    every checkpointed epoch between the resume point and the last checkpoint that
    existed when the fault was injected, had the run resumed from an older one.
    """
    return max(1, last_saved_at_fault + 1 - resumed_from) / EVERY_EPOCHS


def epochs_of(outcome: Any) -> list[int]:
    return [int(row["epoch"]) for row in outcome.history]


class Background:
    """Runs `fn` in a thread; `join()` returns its result or raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as err:  # handed to the test thread by join()
            self.error = err

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 600) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the run did not end within {timeout:.0f} s"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 300, every: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


def run_driver(
    config_json: str, data: str, name: str, storage: str, env: dict, cwd: Path
) -> subprocess.CompletedProcess:
    """`tests.faults.driver` in its own process (its own Ray client); see that module."""
    return subprocess.run(
        [sys.executable, "-m", "tests.faults.driver", config_json, data, name, storage],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
