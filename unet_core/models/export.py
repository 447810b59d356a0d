"""Export a model to a ``torch.export.ExportedProgram`` (the project's deployable form).

ONNX is not a dependency; an exported program can be lowered later (AOTInductor,
ExecuTorch, or ``torch.onnx.export(..., dynamo=True)`` where onnx is installed).
"""

from __future__ import annotations

import torch
from torch import nn


def export_model(
    model: nn.Module, example_input: torch.Tensor, *, dynamic_batch: bool = True
) -> torch.export.ExportedProgram:
    """Export ``model`` in eval mode for inputs shaped like ``example_input``.

    Spatial sizes are fixed to the example's (the pad/crop amounts are resolved at
    export time); the batch dimension is dynamic when ``dynamic_batch`` is set.
    The model's training flag is restored afterwards.

    Args:
        model: a module mapping [B, C, *S] to logits [B, K, *S].
        example_input: a representative input [B, C, *S]; use B >= 2 so the batch
            size is not specialised to 1.

    Returns:
        The exported program; call ``program.module()(x)`` to run it.
    """
    was_training = model.training
    model.eval()  # eval: deep supervision returns one tensor, norms use running stats
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    try:
        return torch.export.export(model, (example_input,), dynamic_shapes=dynamic_shapes)
    finally:
        model.train(was_training)
