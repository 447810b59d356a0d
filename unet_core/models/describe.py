"""Cost of a model: parameters, forward FLOPs and activation memory.

These are the cost objectives of architecture searches, measured with one forward
pass on a zero tensor of the given shape (on the model's device).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelDescription:
    """What one forward pass of a model costs.

    Attributes:
        input_shape: the measured input shape [B, C, *S].
        parameters: number of parameters.
        trainable_parameters: parameters with ``requires_grad``.
        flops: forward FLOPs for the whole batch (a multiply-add counts as 2), as
            counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
            matmuls; norms, activations, pooling and interpolation are not counted).
        activation_bytes: approximate activation memory of a training step: the
            summed output sizes of all leaf modules in one training-mode forward
            (what autograd mostly keeps for backward; concatenations, padding and
            framework overhead are not included).
    """

    input_shape: tuple[int, ...]
    parameters: int
    trainable_parameters: int
    flops: int
    activation_bytes: int

    @property
    def flops_per_sample(self) -> float:
        """Forward FLOPs for one sample of the batch."""
        return self.flops / self.input_shape[0]


def describe(model: nn.Module, input_shape: tuple[int, ...] | list[int]) -> ModelDescription:
    """Count parameters, forward FLOPs and activation bytes of ``model``.

    The forward runs in training mode (so deep-supervision heads are included) under
    ``torch.no_grad``; the model's mode and buffers (e.g. batch-norm running
    statistics) are restored afterwards, so ``describe`` leaves the model unchanged.

    Args:
        model: any module taking one tensor.
        input_shape: full input shape, batch first, e.g. ``(1, 1, 256, 256)``.
    """
    shape = tuple(int(s) for s in input_shape)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    x = torch.zeros(shape, device=device, dtype=dtype)

    buffers = {name: b.clone() for name, b in model.named_buffers()}
    was_training = model.training
    activation_bytes = 0

    def count_output(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal activation_bytes
        if isinstance(output, torch.Tensor):
            activation_bytes += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count_output) for m in leaves]
    counter = FlopCounterMode(display=False)
    try:
        model.train()
        with torch.no_grad(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])

    return ModelDescription(
        input_shape=shape,
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops=int(counter.get_total_flops()),
        activation_bytes=activation_bytes,
    )
