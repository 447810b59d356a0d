"""Folder data sets: every format, and a one-line DataError for every kind of bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_core.data import DataError, FolderDataset, load_pair, scan_folder

RNG = np.random.default_rng(0)
MASK = (RNG.random((12, 10)) > 0.5).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` in the format named by the path's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if name.endswith(".png"):
        Image.fromarray(array).save(path)
    elif name.endswith((".tif", ".tiff")):
        tifffile.imwrite(path, array)
    elif name.endswith(".npy"):
        np.save(path, array)
    else:
        nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return path


def _pair(root: Path, stem: str, image: np.ndarray, mask: np.ndarray, ext: str) -> None:
    _save(root / "images" / f"{stem}.{ext}", image)
    _save(root / "masks" / f"{stem}.{ext}", mask)


@pytest.mark.parametrize(
    ("ext", "image", "channels"),
    [
        ("png", (RNG.random((12, 10)) * 255).astype(np.uint8), 1),
        ("png", (RNG.random((12, 10, 3)) * 255).astype(np.uint8), 3),
        ("tif", RNG.random((12, 10)).astype(np.float32), 1),
        ("tiff", RNG.random((12, 10, 4)).astype(np.float32), 4),
        ("npy", RNG.random((2, 12, 10)).astype(np.float32), 2),
    ],
)
def test_2d_formats_scan_and_load(
    tmp_path: Path, ext: str, image: np.ndarray, channels: int
) -> None:
    mask = MASK * 255 if ext == "png" else MASK  # png masks are often saved as 0/255
    _pair(tmp_path, "b", image, mask, ext)
    _pair(tmp_path, "a", image, mask, ext)
    samples = scan_folder(tmp_path, spatial_dims=2)
    assert [s.stem for s in samples] == ["a", "b"]
    loaded_image, loaded_mask = load_pair(samples[0], 2, in_channels=channels)
    assert loaded_image.dtype == np.float32 and loaded_image.shape == (channels, 12, 10)
    assert loaded_mask.dtype == np.uint8 and np.array_equal(loaded_mask, MASK)
    expected = image[None] if image.ndim == 2 else image
    if ext in ("png", "tif", "tiff") and image.ndim == 3:
        expected = np.moveaxis(image, -1, 0)
    assert np.array_equal(loaded_image, expected.astype(np.float32))


@pytest.mark.parametrize("ext", ["nii.gz", "nii", "tif", "npy"])
def test_3d_formats_scan_and_load(tmp_path: Path, ext: str) -> None:
    image = RNG.random((6, 8, 7)).astype(np.float32)
    mask = (image > 0.5).astype(np.uint8)
    _pair(tmp_path, "vol", image, mask, ext)
    loaded_image, loaded_mask = load_pair(scan_folder(tmp_path, 3)[0], 3)
    assert np.array_equal(loaded_image[0], image) and np.array_equal(loaded_mask, mask)


def test_nifti_channels_last_and_folder_dataset(tmp_path: Path) -> None:
    image = RNG.random((6, 8, 7, 2)).astype(np.float32)
    _pair(tmp_path, "vol", image, (image[..., 0] > 0.5).astype(np.int16), "nii.gz")
    dataset = FolderDataset(tmp_path, 3, in_channels=2)
    tensor_image, tensor_mask = dataset[0]
    assert len(dataset) == 1 and tensor_image.shape == (2, 6, 8, 7)
    assert str(tensor_mask.dtype) == "torch.int64" and tensor_mask.shape == (6, 8, 7)


def _write_pair(
    mask: np.ndarray | None = None, image: np.ndarray | None = None, ext: str = "npy"
) -> Callable[[Path], None]:
    """A folder writer for one pair ``s1`` (defaults: a valid image and mask)."""
    if image is None:
        image = RNG.random((12, 10)).astype(np.float32)
        image = (image * 255).astype(np.uint8) if ext == "png" else image

    def write(root: Path) -> None:
        _pair(root, "s1", image, MASK if mask is None else mask, ext)

    return write


def _nan_image() -> np.ndarray:
    image = RNG.random((12, 10)).astype(np.float32)
    image[3, 4] = np.nan
    return image


def _corrupt(root: Path) -> None:
    _write_pair(ext="png")(root)
    (root / "images" / "s1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def _only_image(root: Path) -> None:
    _write_pair()(root)
    (root / "masks" / "s1.npy").unlink()


def _orphan_mask(root: Path) -> None:
    _write_pair()(root)
    _save(root / "masks" / "extra.npy", MASK)


CASES = {
    "corrupt file": (_corrupt, 2, "s1.png: cannot read .png file"),
    "image without mask": (_only_image, 2, "1 image(s) without a matching mask: s1"),
    "mask without image": (_orphan_mask, 2, "1 mask(s) without a matching image: extra"),
    "shape mismatch": (
        _write_pair(mask=MASK[:, :9]),
        2,
        "s1.npy: mask shape (12, 9) differs from image s1.npy",
    ),
    "fractional mask": (
        _write_pair(mask=MASK * 0.37),
        2,
        "s1.npy: mask values are not integer labels (found 0.37)",
    ),
    "negative mask": (
        _write_pair(mask=MASK.astype(np.int16) - 1),
        2,
        "mask labels must be in 0..255",
    ),
    "rgb mask": (_write_pair(mask=np.stack([MASK] * 3, -1), ext="png"), 2, "mask has 3 channels"),
    "nan image": (
        _write_pair(image=_nan_image()),
        2,
        "s1.npy: image contains NaN or Inf (1 values)",
    ),
    "inf image": (
        _write_pair(image=np.full((12, 10), np.inf, np.float32)),
        2,
        "image contains NaN or Inf",
    ),
    "nifti in 2d": (
        _write_pair(
            image=np.zeros((4, 4, 4), np.float32), mask=np.zeros((4, 4, 4), np.uint8), ext="nii.gz"
        ),
        2,
        "s1.nii.gz: is a 3D format (.nii.gz) but spatial_dims=2",
    ),
    "3d npy in 2d": (
        _write_pair(image=np.zeros((9, 12, 10), np.float32)),
        2,
        "looks like a 3D volume (9, 12, 10) but spatial_dims=2",
    ),
    "2d npy in 3d": (_write_pair(), 3, "has 2 axes (12, 10) but spatial_dims=3"),
    "unsupported extension": (
        lambda root: _save(root / "images" / "s1.jpg.npy", MASK).rename(root / "images" / "s1.jpg"),
        2,
        "unsupported extension .jpg",
    ),
    "duplicate stem": (
        lambda root: (_write_pair()(root), _save(root / "images" / "s1.tif", MASK)),
        2,
        "stem 's1' also used by",
    ),
    "empty folder": (
        lambda root: ((root / "images").mkdir(parents=True), (root / "masks").mkdir()),
        2,
        "no images found",
    ),
    "missing folder": (lambda root: None, 2, "folder does not exist"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_one_line_data_error(tmp_path: Path, case: str) -> None:
    make, spatial_dims, message = CASES[case]
    make(tmp_path)
    with pytest.raises(DataError) as info:
        for sample in scan_folder(tmp_path, spatial_dims):
            load_pair(sample, spatial_dims)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_wrong_channel_count_is_refused(tmp_path: Path) -> None:
    _write_pair(image=RNG.random((3, 12, 10)).astype(np.float32))(tmp_path)
    sample = scan_folder(tmp_path, 2)[0]
    with pytest.raises(DataError, match=r"s1\.npy: image has 3 channel\(s\), expected 1"):
        load_pair(sample, 2, in_channels=1)
    assert load_pair(sample, 2, in_channels=3)[0].shape == (3, 12, 10)


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    _write_pair()(tmp_path)
    (tmp_path / "images" / ".DS_Store").write_bytes(b"junk")
    assert [s.stem for s in scan_folder(tmp_path, 2)] == ["s1"]
