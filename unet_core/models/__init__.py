"""A configurable U-Net family for 2D and 3D segmentation (plain PyTorch).

Use ``create_model("unet", in_channels=3, out_channels=4)``; ``list_models()`` gives
the presets (``unet``, ``unetpp``, ``attention_unet``, ``resunet``, ``unet3d``,
``classic_unet``) and `ModelConfig` every knob.

Forward contract (losses and training code rely on it):
    * Input [B, in_channels, *S] with any spatial size S (2D ``H, W`` or 3D
      ``D, H, W``); it need not be a multiple of ``2**depth``: the input is padded
      internally and the output cropped back. Output: logits [B, out_channels, *S]
      (no sigmoid/softmax).
    * ``deep_supervision=True`` and ``model.training``: forward returns a
      ``list[Tensor]``. Element 0 is the main, full-resolution output; the
      auxiliary outputs follow, each [B, out_channels, *S_i]:
        - concat skips (U-Net family): ``depth`` outputs, element ``i`` from decoder
          level ``i`` at ``S_i = ceil(S / 2**i)``, so the coarsest is last;
        - nested skips (U-Net++): one output per decoder depth, ``depth`` outputs all
          at full resolution, ``[X_{0,depth} (main), X_{0,depth-1}, ..., X_{0,1}]``.
    * In eval mode forward always returns only the main Tensor.
    * With ``attention_gates=True`` the model keeps ``model.last_attention_maps``
      after every forward: one detached map per skip, finest first, level ``i`` of
      shape [B, 1, *ceil(S / 2**i)], values in [0, 1].

``describe(model, input_shape)`` gives parameters, forward FLOPs and activation memory;
``export_model(model, example)`` gives a ``torch.export`` program with a dynamic batch.
"""

from __future__ import annotations

from unet_core.models.base import SegmentationModel
from unet_core.models.config import ModelConfig
from unet_core.models.describe import ModelDescription, describe
from unet_core.models.export import export_model
from unet_core.models.registry import (
    PRESETS,
    build_model,
    create_model,
    get_model_config,
    list_models,
)
from unet_core.models.unet import UNet
from unet_core.models.unetpp import UNetPlusPlus

__all__ = [
    "PRESETS",
    "ModelConfig",
    "ModelDescription",
    "SegmentationModel",
    "UNet",
    "UNetPlusPlus",
    "build_model",
    "create_model",
    "describe",
    "export_model",
    "get_model_config",
    "list_models",
]
