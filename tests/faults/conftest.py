"""Shared by the fault tests: one config, its uninterrupted run, and the recorder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.common import final_dice, fit_config
from tests.faults.recorder import fault_record  # noqa: F401  (a fixture for every test here)


@pytest.fixture(scope="session")
def baseline_dice(prepared_dir: Path, ray_local, tmp_path_factory: pytest.TempPathFactory):
    """Final val_dice of the uninterrupted run that every faulted run is compared with."""
    from unetflow.ray_train import fit_with_ray

    storage = tmp_path_factory.mktemp("baseline")
    return final_dice(fit_with_ray(fit_config(), prepared_dir, "baseline", str(storage)))
