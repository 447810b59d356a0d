"""Two Ray Train workers on two GPUs with NCCL (marker `gpu`; needs 2 GPUs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetflow.config import parse_config
from unetflow.ray_train import fit_with_ray

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_two_gpu_workers_train_with_nccl(prepared_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    import ray

    if ray.is_initialized():  # a CPU-only session Ray would have no GPUs to give
        ray.shutdown()
    ray.init(
        num_cpus=4,
        num_gpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=0,
        _node_ip_address="127.0.0.1",
    )
    try:
        cfg = parse_config(
            {
                "name": "nccl",
                "model": {"preset": "unet", "base_channels": 8, "depth": 2},
                "train": {"epochs": 2, "batch_size": 4, "accumulate_steps": 2},
                "scaling": {"num_workers": 2, "use_gpu": True, "gpus_per_worker": 1},
                "checkpoint": {"max_failures": 0},
            }
        )
        out = fit_with_ray(cfg, prepared_dir, "nccl", str(tmp_path / "ray"))
    finally:
        ray.shutdown()
    assert [int(h["epoch"]) for h in out.history] == [0, 1]
    assert 0.0 <= out.best_metrics["val_dice"] <= 1.0
