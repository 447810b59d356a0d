"""Building blocks that work for 2D and 3D alike.

`layer(name, spatial_dims)` is a small factory in the spirit of MONAI's
``Conv["conv", spatial_dims]``: blocks are written once and get ``nn.Conv2d`` or
``nn.Conv3d`` (and friends) from the spatial dimensionality of the config.
Tensor shapes below use ``*S`` for the spatial dimensions (``H, W`` or ``D, H, W``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unet_core.models.config import ModelConfig

_LAYERS: dict[tuple[str, int], type[nn.Module]] = {
    ("conv", 2): nn.Conv2d,
    ("conv", 3): nn.Conv3d,
    ("conv_transpose", 2): nn.ConvTranspose2d,
    ("conv_transpose", 3): nn.ConvTranspose3d,
    ("max_pool", 2): nn.MaxPool2d,
    ("max_pool", 3): nn.MaxPool3d,
    ("batch_norm", 2): nn.BatchNorm2d,
    ("batch_norm", 3): nn.BatchNorm3d,
    ("instance_norm", 2): nn.InstanceNorm2d,
    ("instance_norm", 3): nn.InstanceNorm3d,
}

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
}

# Linear interpolation mode per dimensionality (F.interpolate names them differently).
_LINEAR_MODE = {2: "bilinear", 3: "trilinear"}


def layer(name: str, spatial_dims: int) -> type[nn.Module]:
    """Return the layer class ``name`` for ``spatial_dims`` (e.g. ``("conv", 3)`` -> Conv3d).

    Raises:
        ValueError: if the pair is unknown; the message lists the valid pairs.
    """
    try:
        return _LAYERS[(name, spatial_dims)]
    except KeyError:
        valid = sorted(f"{n}/{d}d" for n, d in _LAYERS)
        raise ValueError(f"no layer {name!r} for {spatial_dims}D; valid: {valid}") from None


def make_norm(config: ModelConfig, channels: int) -> nn.Module:
    """Normalisation layer named by ``config.norm`` for ``channels`` feature maps."""
    if config.norm == "batch":
        return layer("batch_norm", config.spatial_dims)(channels)
    if config.norm == "instance":
        # affine=True so instance norm has the same learnable shift/scale as the others.
        return layer("instance_norm", config.spatial_dims)(channels, affine=True)
    if config.norm == "group":
        return nn.GroupNorm(config.norm_groups, channels)
    return nn.Identity()


def make_activation(config: ModelConfig) -> nn.Module:
    """Fresh activation module named by ``config.activation`` (PReLU has parameters)."""
    return _ACTIVATIONS[config.activation]()


def conv(
    config: ModelConfig, in_ch: int, out_ch: int, kernel: int = 3, *, bias: bool | None = None
) -> nn.Module:
    """Same-padded convolution; bias only when no norm follows (a norm's shift replaces it)."""
    if bias is None:
        bias = config.norm == "none"
    return layer("conv", config.spatial_dims)(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias)


class PlainBlock(nn.Module):
    """Two (conv 3 -> norm -> activation) layers, the original U-Net "double conv".

    Shapes: [B, in_ch, *S] -> [B, out_ch, *S].
    """

    def __init__(self, config: ModelConfig, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            conv(config, in_ch, out_ch),
            make_norm(config, out_ch),
            make_activation(config),
            nn.Dropout(config.dropout),
            conv(config, out_ch, out_ch),
            make_norm(config, out_ch),
            make_activation(config),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResidualBlock(nn.Module):
    """Two conv-norm layers plus a shortcut, activation after the sum (He et al.).

    The shortcut is a 1x1 conv + norm when the width changes, else the identity.
    Shapes: [B, in_ch, *S] -> [B, out_ch, *S].
    """

    def __init__(self, config: ModelConfig, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            conv(config, in_ch, out_ch),
            make_norm(config, out_ch),
            make_activation(config),
            nn.Dropout(config.dropout),
            conv(config, out_ch, out_ch),
            make_norm(config, out_ch),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(
                conv(config, in_ch, out_ch, kernel=1), make_norm(config, out_ch)
            )
        self.activation = make_activation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.main(x) + self.shortcut(x))


def make_block(config: ModelConfig, in_ch: int, out_ch: int) -> nn.Module:
    """The block type named by ``config.block``."""
    if config.block == "residual":
        return ResidualBlock(config, in_ch, out_ch)
    return PlainBlock(config, in_ch, out_ch)


class Upsample(nn.Module):
    """Undo one pooling step (``kernel`` per axis, 2 by default) and map ``in_ch`` to
    ``out_ch`` feature maps.

    ``transpose``: a learned transposed conv with kernel = stride = ``kernel`` (2x2 stride
    2 in the original U-Net). ``interpolate``: (bi|tri)linear up-sampling then a 1x1
    conv, which avoids checkerboard artefacts and has fewer parameters.
    Shapes: [B, in_ch, *S] -> [B, out_ch, *(kernel * S)].
    """

    def __init__(
        self, config: ModelConfig, in_ch: int, out_ch: int, kernel: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.mode = config.upsample
        self.linear_mode = _LINEAR_MODE[config.spatial_dims]
        self.kernel = kernel or (2,) * config.spatial_dims
        if self.mode == "transpose":
            self.proj = layer("conv_transpose", config.spatial_dims)(
                in_ch, out_ch, kernel_size=self.kernel, stride=self.kernel
            )
        else:
            self.proj = conv(config, in_ch, out_ch, kernel=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.proj(x)
        scale = tuple(float(k) for k in self.kernel)
        x = F.interpolate(x, scale_factor=scale, mode=self.linear_mode, align_corners=False)
        return self.proj(x)


class AttentionGate(nn.Module):
    """Additive attention gate of Oktay et al. (2018), "Attention U-Net".

    ``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` is computed at the gating signal's
    (coarser) resolution, as in the paper, then brought up to the skip's resolution.

    Shapes: skip x [B, Cx, *S], gate g [B, Cg, *(S / kernel)] ->
    (gated skip [B, Cx, *S], alpha [B, 1, *S] in [0, 1]).
    """

    def __init__(
        self, config: ModelConfig, skip_ch: int, gate_ch: int, kernel: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        inter_ch = max(skip_ch // 2, 1)
        kernel = kernel or (2,) * config.spatial_dims
        # A strided conv brings the skip down to the gate's grid (the paper's W_x).
        self.w_x = layer("conv", config.spatial_dims)(
            skip_ch, inter_ch, kernel, stride=kernel, bias=False
        )
        self.w_g = conv(config, gate_ch, inter_ch, kernel=1, bias=True)
        self.psi = conv(config, inter_ch, 1, kernel=1, bias=True)
        self.linear_mode = _LINEAR_MODE[config.spatial_dims]

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.psi(F.relu(self.w_x(x) + self.w_g(g)))
        # Upsample the logits and squash afterwards, so alpha is exactly in [0, 1]
        # (interpolating sigmoid outputs can round a hair above 1).
        logits = F.interpolate(logits, size=x.shape[2:], mode=self.linear_mode, align_corners=False)
        alpha = torch.sigmoid(logits)
        return x * alpha, alpha
