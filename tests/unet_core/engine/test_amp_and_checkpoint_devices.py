"""AMP choice per GPU generation, and checkpoints that resume wherever they are loaded."""

from __future__ import annotations

import pytest
import torch

from tests.support.engine import tiny_trainer as _trainer
from unet_core.engine import amp_dtype, capture_state, fit, load_checkpoint, save_checkpoint
from unet_core.engine.results import FitResult


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((7, 0), torch.float16),  # V100: bf16 is emulated, fp16 has tensor cores
        ((7, 5), torch.float16),  # T4
        ((8, 0), torch.bfloat16),  # A100
        ((8, 6), torch.bfloat16),  # A10, RTX 30xx
        ((9, 0), torch.bfloat16),  # H100
    ],
)
def test_amp_auto_picks_bf16_only_from_ampere_on(capability, expected) -> None:
    assert amp_dtype("auto", "cuda", capability) is expected


def test_amp_auto_is_off_on_cpu_and_explicit_choices_win() -> None:
    assert amp_dtype("auto", "cpu") is None
    assert amp_dtype("off", "cuda", (9, 0)) is None
    assert amp_dtype("bf16", "cuda", (7, 0)) is torch.bfloat16  # asked for: given
    assert amp_dtype("fp16", "cuda", (9, 0)) is torch.float16


def test_checkpoint_loaded_onto_another_device_keeps_rng_states_as_cpu_bytes(tmp_path) -> None:
    """`map_location` moves weights; RNG states must stay CPU ByteTensors or resuming
    raises `RNG state must be a torch.ByteTensor` (what every GPU resume did). The meta
    device stands in for CUDA here: it is "another device" on a CPU-only machine."""
    trainer = _trainer(epochs=1, augment=True)
    result = fit(trainer)
    path = save_checkpoint(capture_state(trainer, 0, result, 0), tmp_path / "ckpt.pt")
    state = load_checkpoint(path, map_location="meta")
    assert next(iter(state["model"].values())).device.type == "meta"
    for key in ("torch_rng", "augment_rng"):
        assert state[key].device.type == "cpu" and state[key].dtype == torch.uint8, key
    # Resuming from it works (weights copied from the CPU load, RNG states restored).
    resumed = _trainer(epochs=2, augment=True)
    cpu_state = load_checkpoint(path)
    resumed_result = fit(resumed, resume={**cpu_state, "torch_rng": state["torch_rng"]})
    assert [h.epoch for h in resumed_result.history] == [0, 1]


def test_restore_accepts_rng_states_in_another_dtype() -> None:
    """A state whose RNG tensors were converted by some other loader still restores."""
    from unet_core.engine import restore_state

    trainer = _trainer(epochs=1)
    state = capture_state(trainer, 0, FitResult(), 0)
    expected = torch.get_rng_state()
    torch.manual_seed(123)
    restore_state(trainer, {**state, "torch_rng": state["torch_rng"].to(torch.int32)}, FitResult())
    assert torch.equal(torch.get_rng_state(), expected)
