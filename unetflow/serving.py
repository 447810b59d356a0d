"""The MLflow pyfunc flavour of a unetflow model.

Logged as a `PythonModel` holding a model package (state dict + config, loaded with
`weights_only=True`) rather than MLflow's torch.export flavour, which would specialise
the graph to one batch and image size.
"""

from __future__ import annotations

from math import inf
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch

from unet_core.package import load_package

PACKAGE_ARTIFACT = "model_package"


class UNetSegmenter(mlflow.pyfunc.PythonModel):
    """Input: float32 images [B, C, *spatial] (raw intensities). Output: uint8 masks.

    Params: ``tta`` (flip averaging), ``threshold`` (binary cut), ``spacing`` (the
    inputs' voxel size: resampled to the training spacing and the masks back)."""

    def load_context(self, context) -> None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.segmenter = load_package(context.artifacts[PACKAGE_ARTIFACT])

    # np.ndarray as the input hint: MLflow then keeps the logged tensor signature and
    # stops warning that predict has no type hints.
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        params = params or {}
        images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        config = self.segmenter.config
        expected = config.spatial_dims + 2
        if images.ndim != expected:
            raise ValueError(
                f"input has shape {tuple(images.shape)}; expected {expected} axes "
                f"[batch, {config.in_channels} channels, spatial...]"
            )
        threshold = params.get("threshold")
        masks = self.segmenter(
            images,
            tta=bool(params.get("tta", False)),
            threshold=None if threshold is None else float(threshold),
            spacing=input_spacing(params.get("spacing"), config.spatial_dims),
        )
        return masks.cpu().numpy()


def input_spacing(value: Any, spatial_dims: int) -> tuple[float, ...] | None:
    """The ``spacing`` param: the inputs' voxel size, or None (empty or absent).

    A model trained at a target spacing then resamples the inputs to it and the masks
    back onto the inputs' grid, as `unetflow predict` does with a NIfTI header's spacing.
    """
    if value is None or len(value) == 0:
        return None
    spacing = tuple(float(v) for v in value)
    if len(spacing) != spatial_dims or not all(0 < v < inf for v in spacing):  # NaN too
        raise ValueError(
            f"params.spacing {list(spacing)} needs {spatial_dims} positive finite voxel sizes "
            "(one per spatial axis, as in the training data's units), or []"
        )
    return spacing
