"""`unetflow predict`: segment every image of a folder with a trained model.

The model is an MLflow model URI (`models:/unet-seg@champion`, `runs:/<id>/model`), a
model package file (`model.pt`) or a training checkpoint (`checkpoint.pt`, or the Ray
checkpoint folder holding it). Masks are written with the input's stem and format:
png -> png (binary masks as 0/255 so they are visible), tif -> tif, npy -> npy,
nii / nii.gz -> nii.gz (with the input's affine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unet_core.data import EXTENSIONS, check_image, read_array
from unet_core.data.folder import file_extension, to_channels_first
from unet_core.package import Segmenter, load_package
from unetflow.errors import UsageError


def use_project_store(ref: str, project_dir: Path) -> None:
    """Point MLflow at the project's store for a `models:/` or `runs:/` URI.

    Without `MLFLOW_TRACKING_URI`, MLflow would create an empty store in the working
    folder just to find the model missing; the project's own store is used instead,
    and a project without one is refused before anything is written.
    """
    if not ref.startswith(("models:/", "runs:/")) or os.environ.get("MLFLOW_TRACKING_URI"):
        return
    store = project_dir.resolve() / ".unetflow" / "mlflow.db"
    if not store.is_file():
        raise UsageError(
            f"--model {ref}: no MLflow store at {store}; train a model first (`unetflow run`), "
            "pass --project-dir, or set MLFLOW_TRACKING_URI"
        )
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store}")


def load_segmenter(ref: str) -> Segmenter:
    """Load a model from an MLflow URI, a package/checkpoint file or a checkpoint folder."""
    path = Path(ref)
    if path.is_dir() and (path / "checkpoint.pt").is_file():
        path = path / "checkpoint.pt"
    if path.is_file():
        try:
            return load_package(path)
        except ValueError as err:
            raise UsageError(f"--model {ref}: {err}") from None
        except Exception as err:  # torch.load refusing the file: corrupt or not a model
            raise UsageError(
                f"--model {ref}: cannot load ({type(err).__name__}); "
                "pass a model package, checkpoint or MLflow model URI"
            ) from None
    if "://" not in ref and ":/" not in ref and not (path / "MLmodel").is_file():
        raise UsageError(
            f"--model {ref}: no such file or MLflow model; pass model.pt, checkpoint.pt, "
            "an MLflow model folder or a URI like models:/unet-seg@champion"
        )
    import mlflow.pyfunc

    try:
        wrapped = mlflow.pyfunc.load_model(ref).unwrap_python_model()
    except Exception as err:  # MLflow raises many types for a missing model or store
        raise UsageError(f"--model {ref}: MLflow could not load it ({err})") from None
    if not isinstance(getattr(wrapped, "segmenter", None), Segmenter):
        raise UsageError(f"--model {ref}: not a unetflow model (pyfunc {type(wrapped).__name__})")
    return wrapped.segmenter


def list_images(folder: Path, spatial_dims: int) -> list[Path]:
    """Supported image files of `folder` (not recursive, hidden files skipped), sorted."""
    if not folder.is_dir():
        raise UsageError(f"--input {folder}: not a folder; pass a folder of images")
    allowed = EXTENSIONS[spatial_dims]
    files = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and file_extension(p) in allowed
    ]
    if not files:
        raise UsageError(
            f"--input {folder}: no images with extensions {allowed} for a {spatial_dims}D model"
        )
    return files


def output_path(image: Path, out_dir: Path) -> Path:
    """Same stem as the input; nii becomes nii.gz, other formats keep their extension."""
    ext = file_extension(image)
    stem = image.name[: -len(ext) - 1]
    return out_dir / f"{stem}.{'nii.gz' if ext in ('nii', 'nii.gz') else ext}"


def write_mask(mask: np.ndarray, source: Path, dest: Path, mode: str) -> None:
    """Write atomically in `dest`'s format; a crash never leaves a truncated mask."""
    ext = file_extension(dest)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=f".{ext}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mode == "multilabel":
            mask = np.moveaxis(mask, 0, -1)  # channels-last, like the inputs
        if ext == "png":
            from PIL import Image

            Image.fromarray(mask * 255 if mode == "binary" else mask).save(tmp, format="PNG")
        elif ext in ("tif", "tiff"):
            import tifffile

            tifffile.imwrite(tmp, mask)
        elif ext == "npy":
            with tmp.open("wb") as f:
                np.save(f, mask)
        else:
            import nibabel as nib

            affine = nib.load(source).affine
            nib.save(nib.Nifti1Image(mask, affine), tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_predict(args: argparse.Namespace) -> int:
    use_project_store(args.model, args.project_dir)
    segmenter = load_segmenter(args.model)
    dims = segmenter.config.spatial_dims
    if args.patch is not None and len(args.patch) != dims:
        raise UsageError(f"--patch {args.patch}: give {dims} sizes for a {dims}D model")
    inputs = list_images(args.input, dims)
    if args.output.resolve() == args.input.resolve():
        raise UsageError(f"--output {args.output}: same as --input; pick another folder")
    args.output.mkdir(parents=True, exist_ok=True)
    print(f"predicting {len(inputs)} image(s) from {args.input} into {args.output}", flush=True)
    started = time.perf_counter()
    for i, path in enumerate(inputs, 1):
        t0 = time.perf_counter()
        image = to_channels_first(read_array(path), dims, path)
        image = check_image(image, path, segmenter.config.in_channels)
        patch = tuple(args.patch) if args.patch else None
        mask = segmenter(torch.from_numpy(image)[None], tta=args.tta, patch=patch)[0]
        dest = output_path(path, args.output)
        write_mask(mask.cpu().numpy(), path, dest, segmenter.spec.mode)
        shape = "x".join(map(str, image.shape[1:]))
        print(
            f"[{i}/{len(inputs)}] {path.name} ({shape}) -> {dest.name} "
            f"{time.perf_counter() - t0:.2f}s",
            flush=True,
        )
    print(f"done: {len(inputs)} mask(s) in {time.perf_counter() - started:.1f}s", flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment a folder of images with a trained model")
    p.add_argument(
        "--model",
        required=True,
        help="MLflow model URI (models:/unet-seg@champion), model.pt or checkpoint.pt",
    )
    p.add_argument("--input", type=Path, required=True, help="folder of images")
    p.add_argument("--output", type=Path, required=True, help="folder for the masks")
    p.add_argument("--tta", action="store_true", help="average over flips (slower)")
    p.add_argument(
        "--patch",
        type=int,
        nargs="+",
        metavar="N",
        help="sliding-window tile per spatial axis (default: the model's, else whole image)",
    )
    p.add_argument(
        "--project-dir",
        type=Path,
        default=Path("."),
        help="project whose MLflow store holds models:/ URIs (default: .)",
    )
    p.set_defaults(func=cmd_predict)
