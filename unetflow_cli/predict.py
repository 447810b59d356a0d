"""`unetflow predict`: segment every image of a folder or S3 prefix with a trained model.

The model is an MLflow model URI (`models:/unet-seg@champion`, `runs:/<id>/model`), a
model package file (`model.pt`) or a training checkpoint (`checkpoint.pt`, or the Ray
checkpoint folder holding it). Masks are written with the input's stem and format
(`unetflow.prediction`); inputs whose mask exists are skipped, so a rerun finishes an
interrupted job. `--workers N` spreads the cases over N Ray workers.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from unet_core.data import store
from unet_core.package import Segmenter, load_package
from unetflow import prediction
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


def cmd_predict(args: argparse.Namespace) -> int:
    use_project_store(args.model, args.project_dir)
    segmenter = load_segmenter(args.model)
    dims = segmenter.config.spatial_dims
    if args.patch is not None and len(args.patch) != dims:
        raise UsageError(f"--patch {args.patch}: give {dims} sizes for a {dims}D model")
    if args.gpu and args.workers < 1:
        raise UsageError("--gpu needs --workers N (N Ray workers with one GPU each)")
    src, out = _location(args.input), _location(args.output)
    inputs = prediction.list_images(src, dims)
    prediction.prepare_output(out, src)
    jobs, done = prediction.plan_jobs(inputs, out)
    options = prediction.Options(
        tta=args.tta,
        patch=tuple(args.patch) if args.patch else None,
        storage=store.default_options(out) or store.default_options(src),
    )
    where = f"on {args.workers} Ray worker(s)" if args.workers else "in this process"
    skipped = f", {done} already done" if done else ""
    print(f"predicting {len(jobs)} image(s) from {src} into {out} {where}{skipped}", flush=True)
    started = time.perf_counter()
    if args.workers:
        from unetflow.ray_train import ensure_ray

        ensure_ray()
        lines = prediction.run_ray(segmenter, jobs, options, args.workers, args.gpu)
    else:
        lines = prediction.run_local(segmenter, jobs, options)
    for i, line in enumerate(lines, 1):
        print(f"[{i}/{len(jobs)}] {line}", flush=True)
    print(f"done: {len(jobs)} mask(s) in {time.perf_counter() - started:.1f}s", flush=True)
    return 0


def _location(value: str) -> str:
    """A URI as given, a local folder made absolute; other schemes are refused."""
    if "://" in value and not value.startswith("s3://"):
        raise UsageError(f"{value}: unsupported scheme; use a local folder or s3://bucket/prefix")
    if value.startswith("s3://") and not value[5:].strip("/"):
        raise UsageError(f"{value}: no bucket; use s3://bucket/prefix")
    return store.normalise(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment a folder of images with a trained model")
    p.add_argument(
        "--model",
        required=True,
        help="MLflow model URI (models:/unet-seg@champion), model.pt or checkpoint.pt",
    )
    p.add_argument("--input", required=True, help="folder or s3://bucket/prefix of images")
    p.add_argument(
        "--output",
        required=True,
        help="folder or s3://bucket/prefix for the masks (existing masks are kept: a rerun "
        "finishes an interrupted job)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="predict on N Ray workers (Ray Data; RAY_ADDRESS or a local Ray); 0: here",
    )
    p.add_argument("--gpu", action="store_true", help="one GPU per Ray worker")
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
