"""Raw `images/` + `masks/` folders for `bench_quality.py`, prepared as users prepare theirs.

Two sets are written here; the third is any labelled folder the user passes.

- synthetic: 2D cells from the `realistic` preset of `generate_synthetic` (touching and
  overlapping clusters, faint objects, textured background, uneven illumination, blur,
  Poisson noise), one `.npy` pair per image.
- mni152: the MNI152 2009 T1 template that nilearn's wheel ships (read from the package
  files: no network), mask = white-matter probability > 0.5. The 2 mm volume is cut
  into 12 axial slabs of `SLAB` slices, one NIfTI case per slab with its own affine
  (the template's, shifted to the slab), so the project's default case split assigns
  whole slabs to train/val/test (8/2/2), interleaved as its seeded shuffle falls: a
  test slab shares no voxel with a training slab. The top two slabs hold no white
  matter (cortex only): negatives, as in real volumes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_core.data.synthetic import generate_synthetic, preset

SLAB = 8  # slices per axial slab: 12 slabs at 2 mm, so each split gets whole slabs


def synthetic_folder(out: Path, n: int, side: int, seed: int = 0) -> Path:
    """`n` realistic synthetic 2D pairs of `side` x `side` pixels as `.npy` files."""
    images, masks = generate_synthetic(n, (side, side), seed=seed, **preset("realistic"))
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(out / "images" / f"cells_{i:04d}.npy", images[i, 0])
        np.save(out / "masks" / f"cells_{i:04d}.npy", masks[i])
    return out


def mni152_volume(resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1 [X, Y, Z] float32, WM mask [X, Y, Z] uint8, affine 4x4) of nilearn's template.

    `load_mni152_template` / `load_mni152_wm_template` read the NIfTI files bundled in
    `nilearn/datasets/data/` (resampled for resolution 2): nothing is downloaded.
    """
    from nilearn.datasets import load_mni152_template, load_mni152_wm_template

    t1 = load_mni152_template(resolution=resolution)
    wm = load_mni152_wm_template(resolution=resolution)
    image = np.asarray(t1.get_fdata(), dtype=np.float32)
    mask = (np.asarray(wm.get_fdata()) > 0.5).astype(np.uint8)
    return image, mask, np.asarray(t1.affine)


def mni152_folder(out: Path, resolution: int = 2, crop_xy: int | None = None) -> Path:
    """Axial slabs of the MNI152 T1 template and its WM mask, one NIfTI pair per slab.

    Args:
        resolution: 1 or 2 mm (2: 99 x 117 x 95 voxels, padded to whole slabs).
        crop_xy: keep only a central `crop_xy` x `crop_xy` window of each slab (quick runs).
    """
    import nibabel as nib

    image, mask, affine = mni152_volume(resolution)
    pad = -image.shape[2] % SLAB  # zeros above the head: the template's own background
    image = np.pad(image, ((0, 0), (0, 0), (0, pad)))
    mask = np.pad(mask, ((0, 0), (0, 0), (0, pad)))
    x0 = y0 = 0
    if crop_xy is not None:
        x0, y0 = (image.shape[0] - crop_xy) // 2, (image.shape[1] - crop_xy) // 2
        image = image[x0 : x0 + crop_xy, y0 : y0 + crop_xy]
        mask = mask[x0 : x0 + crop_xy, y0 : y0 + crop_xy]
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for k in range(image.shape[2] // SLAB):
        z = slice(k * SLAB, (k + 1) * SLAB)
        # The slab's voxel (0, 0, 0) sits at the template's (x0, y0, k * SLAB).
        slab_affine = affine.copy()
        slab_affine[:3, 3] = affine[:3, :3] @ np.array([x0, y0, k * SLAB]) + affine[:3, 3]
        name = f"mni152_slab{k:02d}.nii.gz"
        nib.save(nib.Nifti1Image(image[:, :, z], slab_affine), out / "images" / name)
        nib.save(nib.Nifti1Image(mask[:, :, z], slab_affine), out / "masks" / name)
    return out
