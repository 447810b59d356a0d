"""Folder data sets: ``root/images/<stem>.<ext>`` paired with ``root/masks/<stem>.<ext>``.

2D: png, tif, tiff, npy. 3D: nii, nii.gz (nibabel), and tif, tiff, npy stacks.
Images may carry channels (channels-last png/tif/nii, channels-first npy); masks are
single-channel label maps. Everything read is checked (`check_image`, `check_mask`) and
every problem raises `DataError` naming the file.

Example:
    >>> samples = scan_folder("data/raw/cells", spatial_dims=2)
    >>> image, mask = load_pair(samples[0], spatial_dims=2)  # [C, H, W] f32, [H, W] u8
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.data.errors import DataError

Reader = Callable[[Path], np.ndarray]


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)  # palette ("P") images give their indices: right for masks


def _read_tif(path: Path) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path))


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _read_nifti(path: Path) -> np.ndarray:
    import nibabel as nib

    # Stub gap: nib.load is typed as the base FileBasedImage, which has no `dataobj`; a
    # .nii(.gz) path loads a Nifti1Image. `dataobj` keeps the stored dtype (labels stay ints).
    return np.asanyarray(nib.load(path).dataobj)  # type: ignore[attr-defined]


READERS: dict[str, Reader] = {
    "png": _read_png,
    "tif": _read_tif,
    "tiff": _read_tif,
    "npy": _read_npy,
    "nii": _read_nifti,
    "nii.gz": _read_nifti,
}
EXTENSIONS: dict[int, tuple[str, ...]] = {
    2: ("png", "tif", "tiff", "npy"),
    3: ("nii", "nii.gz", "tif", "tiff", "npy"),
}


@dataclass(frozen=True)
class Sample:
    """One image/mask pair of a folder data set."""

    stem: str
    image_path: Path
    mask_path: Path


def file_extension(path: Path) -> str:
    """Lower-case extension without the dot; ``nii.gz`` counts as one extension."""
    name = path.name.lower()
    return "nii.gz" if name.endswith(".nii.gz") else path.suffix.lower().lstrip(".")


def _stem(path: Path) -> str:
    return path.name[: -len(file_extension(path)) - 1]


def _under(folder: str | Path, name: str) -> str | Path:
    """`folder/name` for messages: a local path, or a URI such as ``s3://bucket/prefix``."""
    return folder / name if isinstance(folder, Path) else f"{folder.rstrip('/')}/{name}"


def stems_of(names: Iterable[str], spatial_dims: int, folder: str | Path) -> dict[str, str]:
    """Map stem -> file name for the supported files among `names` (hidden ones skipped).

    Args:
        names: file names in `folder` (no sub-folders).
        folder: where they are (a path or a URI), for the error messages.

    Raises:
        DataError: a 3D-only or unsupported extension, or two files with one stem.
    """
    files: dict[str, str] = {}
    for name in sorted(names):
        if name.startswith("."):
            continue
        ext = file_extension(Path(name))
        if ext in ("nii", "nii.gz") and spatial_dims == 2:
            raise DataError(_under(folder, name), f"is a 3D format (.{ext}) but spatial_dims=2")
        if ext not in EXTENSIONS[spatial_dims]:
            raise DataError(
                _under(folder, name),
                f"unsupported extension .{ext} for {spatial_dims}D; use one of {EXTENSIONS[spatial_dims]}",
            )
        stem = _stem(Path(name))
        if stem in files:
            raise DataError(
                _under(folder, name), f"stem {stem!r} also used by {files[stem]}; keep one file per stem"
            )
        files[stem] = name
    return files


def _list_files(folder: Path, spatial_dims: int) -> dict[str, Path]:
    """Map stem -> path of the supported files in ``folder``."""
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist (expected images/ and masks/ side by side)")
    names = [p.name for p in folder.iterdir() if not p.is_dir()]
    return {stem: folder / name for stem, name in stems_of(names, spatial_dims, folder).items()}


def _unpaired(stems: set[str], kind: str, other: str) -> str:
    shown = ", ".join(sorted(stems)[:5]) + (", ..." if len(stems) > 5 else "")
    return f"{len(stems)} {kind}(s) without a matching {other}: {shown}"


def check_pairs(
    images: Collection[str], masks: Collection[str], root: str | Path, spatial_dims: int
) -> None:
    """Every image stem has a mask stem and the other way round, and there are images.

    Args:
        root: the folder (or URI) holding ``images/`` and ``masks/``, for the messages.

    Raises:
        DataError: no images, an image without a mask or a mask without an image.
    """
    if not images:
        raise DataError(
            _under(root, "images"), f"no images found (extensions {EXTENSIONS[spatial_dims]})"
        )
    if missing := set(images) - set(masks):
        raise DataError(_under(root, "masks"), _unpaired(missing, "image", "mask"))
    if orphans := set(masks) - set(images):
        raise DataError(_under(root, "images"), _unpaired(orphans, "mask", "image"))


def scan_folder(root: str | Path, spatial_dims: int) -> list[Sample]:
    """List the image/mask pairs of a folder data set, sorted by stem.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        spatial_dims: 2 or 3; decides which extensions are accepted.

    Returns:
        One `Sample` per stem.

    Raises:
        DataError: missing or empty folders, unsupported or 3D-only files in a 2D
            configuration, duplicate stems, an image without a mask or a mask without
            an image.
    """
    if spatial_dims not in EXTENSIONS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    root = Path(root)
    images = _list_files(root / "images", spatial_dims)
    masks = _list_files(root / "masks", spatial_dims)
    check_pairs(images, masks, root, spatial_dims)
    return [Sample(stem, images[stem], masks[stem]) for stem in sorted(images)]


def read_array(path: str | Path) -> np.ndarray:
    """Read any supported file into a numpy array; failures become `DataError`."""
    path = Path(path)
    ext = file_extension(path)
    if ext not in READERS:
        raise DataError(path, f"unsupported extension .{ext}; use one of {sorted(READERS)}")
    try:
        return READERS[ext](path)
    except Exception as err:  # any reader failure means a corrupt or unreadable file
        raise DataError(path, f"cannot read .{ext} file ({type(err).__name__}: {err})") from err


def to_channels_first(array: np.ndarray, spatial_dims: int, where: str | Path) -> np.ndarray:
    """Bring an array to ``[C, *spatial]``.

    A 2D image with 3 axes is channels-last when its last axis has 1, 3 or 4 entries
    (png/tif convention), else channels-first when its first axis has at most 4; any
    other 3-axis array is a volume, refused in 2D. 3D images with 4 axes are
    channels-last (NIfTI convention).
    """
    if array.ndim == spatial_dims:
        return array[None]
    if array.ndim == spatial_dims + 1:
        if spatial_dims == 3 or array.shape[-1] in (1, 3, 4):
            return np.moveaxis(array, -1, 0)
        if array.shape[0] <= 4:
            return array
        raise DataError(where, f"looks like a 3D volume {array.shape} but spatial_dims=2")
    if array.ndim < spatial_dims:
        raise DataError(
            where, f"has {array.ndim} axes {array.shape} but spatial_dims={spatial_dims}"
        )
    raise DataError(
        where, f"has {array.ndim} axes {array.shape}; expected {spatial_dims} (+1 for channels)"
    )


def check_image(
    array: np.ndarray, where: str | Path, in_channels: int | None = None, keep_dtype: bool = False
) -> np.ndarray:
    """Validate a ``[C, *spatial]`` image and return it as float32 (or in its own dtype).

    ``keep_dtype`` keeps integer and float dtypes as stored (the prepared format keeps a
    CT's int16 at 2 bytes a voxel); booleans become uint8 either way.

    Raises:
        DataError: non-numeric data, NaN/Inf, or a channel count other than ``in_channels``.
    """
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise DataError(where, f"image has non-numeric dtype {array.dtype}")
    if keep_dtype:
        image = np.ascontiguousarray(array, dtype=np.uint8 if array.dtype == bool else None)
    else:
        image = np.ascontiguousarray(array, dtype=np.float32)
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise DataError(where, f"image contains NaN or Inf ({bad} values)")
    if in_channels is not None and image.shape[0] != in_channels:
        raise DataError(where, f"image has {image.shape[0]} channel(s), expected {in_channels}")
    return image


def check_mask(array: np.ndarray, where: str | Path) -> np.ndarray:
    """Validate a label map and return it as uint8.

    Binary masks saved as 0/255 (common for png) are mapped to 0/1.

    Raises:
        DataError: non-integer, negative or > 255 values, NaN/Inf.
    """
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(where, f"mask has non-numeric dtype {array.dtype}")
    values = np.unique(array)
    if not np.isfinite(values).all():
        raise DataError(where, "mask contains NaN or Inf")
    fractional = values[values != np.round(values)]
    if fractional.size:
        raise DataError(where, f"mask values are not integer labels (found {fractional[0]:g})")
    if values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise DataError(
            where, f"mask labels must be in 0..255, found {values.min():g}..{values.max():g}"
        )
    mask = array.astype(np.uint8)
    if values.size and set(values.tolist()) <= {0, 255} and values.max() == 255:
        mask = (mask == 255).astype(np.uint8)  # 0/255 binary image -> 0/1 labels
    return np.ascontiguousarray(mask)


def load_pair(
    sample: Sample, spatial_dims: int, in_channels: int | None = None, keep_dtype: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one image/mask pair.

    Args:
        sample: from `scan_folder`.
        spatial_dims: 2 or 3.
        in_channels: expected image channels; ``None`` accepts any.
        keep_dtype: return the image in its stored dtype instead of float32.

    Returns:
        ``(image float32 [C, *spatial], mask uint8 [*spatial])``.

    Raises:
        DataError: unreadable files, wrong dimensionality or channels, NaN/Inf,
            non-label mask values, or image and mask of different spatial shapes.
    """
    image = to_channels_first(read_array(sample.image_path), spatial_dims, sample.image_path)
    image = check_image(image, sample.image_path, in_channels, keep_dtype)
    mask = to_channels_first(read_array(sample.mask_path), spatial_dims, sample.mask_path)
    if mask.shape[0] != 1:
        raise DataError(
            sample.mask_path, f"mask has {mask.shape[0]} channels; use a single-channel label map"
        )
    mask = check_mask(mask[0], sample.mask_path)
    if image.shape[1:] != mask.shape:
        raise DataError(
            sample.mask_path,
            f"mask shape {mask.shape} differs from image {sample.image_path.name} shape {image.shape[1:]}",
        )
    return image, mask


def read_geometry(path: str | Path, spatial_dims: int) -> tuple[tuple[float, ...], np.ndarray]:
    """``(spacing per spatial axis, (dims+1)^2 affine)`` of an image file.

    NIfTI carries both in its header; other formats have none: spacing 1, identity.
    """
    path = Path(path)
    if file_extension(path) not in ("nii", "nii.gz"):
        return (1.0,) * spatial_dims, np.eye(spatial_dims + 1)
    import nibabel as nib

    try:
        image: Any = nib.load(path)  # nibabel's stubs type it as the file-based base class
        zooms = tuple(float(z) for z in image.header.get_zooms()[:spatial_dims])
        return zooms, np.asarray(image.affine, dtype=np.float64)
    except Exception as err:
        raise DataError(path, f"cannot read the NIfTI header ({type(err).__name__}: {err})") from err
