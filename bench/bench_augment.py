"""Augmentation throughput vs. a training step, and vs. MONAI per-sample transforms.

Usage:
    .venv/bin/python bench/bench_augment.py [--quick] [--device cpu|cuda] [--threads N]

Measures, on one device, batch 16 of 1x256x256 images with binary masks:
  * `BatchAugmenter` with every transform firing on every sample (worst case, elastic
    included) and with the default `AugmentConfig`;
  * one training step (forward + backward + Adam step) of the default U-Net,
    ``create_model("unet", in_channels=1, out_channels=2)``, cross-entropy loss;
  * the equivalent MONAI dictionary transforms applied sample by sample (the usual
    DataLoader-side recipe), on the same device and tensors.
Prints a markdown table and writes it to ``bench/results/augment_<device>.md``.
Goal: augmentation under 10% of a training step.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from unet_core.augment import AugmentConfig, BatchAugmenter
from unet_core.data import generate_synthetic

BATCH, SIDE = 16, 256
ALL_ON = AugmentConfig(
    **{name: 1.0 for name in AugmentConfig.model_fields if name.endswith("_prob")}
)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds per call, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def train_step_fn(
    images: torch.Tensor, masks: torch.Tensor, device: torch.device
) -> Callable[[], None]:
    """One forward + backward + optimizer step of the default U-Net."""
    from unet_core.models import create_model

    model = create_model("unet", in_channels=1, out_channels=2).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optim.zero_grad(set_to_none=True)
        loss_fn(model(images), masks).backward()
        optim.step()

    return step


def monai_fn(images: torch.Tensor, masks: torch.Tensor) -> Callable[[], None]:
    """MONAI's dictionary transforms closest to ALL_ON, applied per sample."""
    from monai import transforms as mt

    keys, both = ["image", "mask"], ("bilinear", "nearest")
    pipeline = mt.Compose(
        [
            mt.RandFlipd(keys, prob=1.0, spatial_axis=0),
            mt.RandFlipd(keys, prob=1.0, spatial_axis=1),
            mt.RandRotate90d(keys, prob=1.0),
            mt.RandAffined(
                keys,
                prob=1.0,
                rotate_range=0.26,
                scale_range=0.15,
                translate_range=13,
                mode=both,
                padding_mode="reflection",
            ),
            mt.Rand2DElasticd(
                keys,
                spacing=(43, 43),
                magnitude_range=(1, 2),
                prob=1.0,
                mode=both,
                padding_mode="reflection",
            ),
            mt.RandScaleIntensityd("image", factors=0.25, prob=1.0),
            mt.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=1.0),
            mt.RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), prob=1.0),
            mt.RandGaussianNoised("image", std=0.1, prob=1.0),
        ]
    )
    pipeline.set_random_state(0)
    samples = [{"image": images[b], "mask": masks[b : b + 1]} for b in range(len(images))]

    def run() -> None:
        for sample in samples:
            pipeline(sample)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        # On a shared, oversubscribed CPU, 1 thread avoids OpenMP spin-wait slowdowns.
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup, repeats = (1, 3) if args.quick else (3, 10)

    raw_images, raw_masks = generate_synthetic(BATCH, (SIDE, SIDE), seed=0)
    images = torch.from_numpy(raw_images).to(device)
    masks = torch.from_numpy(raw_masks).long().to(device)
    gen = torch.Generator().manual_seed(0)

    rows: list[tuple[str, float]] = []
    for label, cfg in [
        ("unet_core BatchAugmenter, all transforms p=1", ALL_ON),
        ("unet_core BatchAugmenter, default AugmentConfig", AugmentConfig()),
    ]:
        aug = BatchAugmenter(cfg, spatial_dims=2)
        rows.append((label, timed(lambda a=aug: a(images, masks, gen), device, warmup, repeats)))
    monai_s = timed(monai_fn(images, masks), device, warmup, max(2, repeats // 3))
    rows.append(("MONAI dict transforms per sample, all p=1", monai_s))
    step_s = timed(train_step_fn(images, masks, device), device, 1, max(2, repeats // 3))
    rows.append(("train step: default U-Net fwd+bwd+Adam", step_s))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    threads = torch.get_num_threads()
    lines = [
        f"# Augmentation benchmark ({device.type}: {name or platform.machine()}, "
        f"{threads} threads, torch {torch.__version__}{', quick' if args.quick else ''})",
        "",
        f"Batch {BATCH} x 1 x {SIDE}x{SIDE}, binary masks; median of {repeats} runs.",
        "",
        "| pipeline | ms / batch | images / s | % of train step | MONAI / this |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, seconds in rows:
        lines.append(
            f"| {label} | {seconds * 1e3:.1f} | {BATCH / seconds:.0f} | "
            f"{100 * seconds / step_s:.1f}% | {monai_s / seconds:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / f"augment_{device.type}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
