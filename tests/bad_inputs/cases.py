"""The bad-input corpus: one row per case. Each is refused with exit code 2 and one line.

A row: the case name, how to build its input under the case folder `root` (a project
folder `root/project` exists already), the CLI argv (`{root}` and `{project}` are filled
in), and words the one error line must hold. Rows marked `subprocess` also run through
the installed console script, end to end.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

Build = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    argv: tuple[str, ...]
    words: tuple[str, ...]
    subprocess: bool = False


# --- builders ------------------------------------------------------------------------


def nothing(root: Path) -> None:
    pass


def dvc_project(root: Path) -> None:
    shutil.copy(REPO / "dvc.yaml", root / "project" / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", root / "project" / "params.yaml")


def _pair(raw: Path, stem: str, shape=(16, 16), ext: str = "png", labels=(0, 255)) -> None:
    rng = np.random.default_rng(len(stem))
    mask = rng.choice(np.asarray(labels, np.uint8), size=shape)
    image = (mask // 2 + rng.integers(0, 60, shape)).astype(np.uint8)
    for sub, array in (("images", image), ("masks", mask)):
        path = raw / sub / f"{stem}.{ext}"
        if ext == "npy":
            np.save(path, array)
        elif ext in ("tif", "tiff"):
            import tifffile

            tifffile.imwrite(path, array)
        else:
            Image.fromarray(array).save(path)


def folder(n: int = 6, **pair) -> Build:
    """A valid images/ + masks/ folder `project/raw` of `n` pairs, then `then(raw)`."""

    def build(root: Path) -> Path:
        raw = root / "project" / "raw"
        for sub in ("images", "masks"):
            (raw / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _pair(raw, f"case{i}", **pair)
        return raw

    return build


def broken(edit: Callable[[Path], None], n: int = 6, **pair) -> Build:
    """A valid folder of `n` pairs, then `edit(raw)` breaks it."""

    def build(root: Path) -> None:
        edit(folder(n, **pair)(root))

    return build


def write(rel: str, text: str | bytes) -> Build:
    def build(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)

    return build


def prepared(channels: int = 1, labels=(0, 1)) -> Build:
    """A prepared data set `project/prep` written by the library itself."""

    def build(root: Path) -> None:
        from unet_core.data import write_prepared

        rng = np.random.default_rng(0)
        splits = {}
        for name, n in (("train", 4), ("val", 2), ("test", 2)):
            images = rng.random((n, channels, 8, 8)).astype(np.float32)
            masks = rng.choice(np.asarray(labels, np.uint8), size=(n, 8, 8))
            splits[name] = (images, masks, [f"{name}{i}" for i in range(n)])
        write_prepared(root / "project" / "prep", splits)

    return build


def _save_npy(rel: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda raw: np.save(raw / rel, array)


def _corrupt(rel: str, data: bytes = b"not an image at all") -> Callable[[Path], None]:
    return lambda raw: (raw / rel).write_bytes(data)


def _truncate(rel: str) -> Callable[[Path], None]:
    def edit(raw: Path) -> None:
        path = raw / rel
        path.write_bytes(path.read_bytes()[:40])

    return edit


def _nifti_folder(root: Path) -> None:
    """3D volumes as NIfTI, the first image a gzip of zeros rather than a NIfTI header."""
    import nibabel as nib

    raw = root / "project" / "raw"
    for sub in ("images", "masks"):
        (raw / sub).mkdir(parents=True)
    for i in range(6):
        volume = np.zeros((8, 8, 4), np.uint8)
        for sub in ("images", "masks"):
            nib.save(nib.Nifti1Image(volume, np.eye(4)), raw / sub / f"case{i}.nii.gz")
    with gzip.open(raw / "images" / "case0.nii.gz", "wb") as f:
        f.write(b"\0" * 100)


def _swap(old: str, new: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(raw: Path) -> None:
        (raw / old).unlink()
        make(raw / new)

    return edit


def _rgb(path: Path) -> None:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)


def _resized(rel: str, shape) -> Callable[[Path], None]:
    return lambda raw: Image.fromarray(np.zeros(shape, np.uint8)).save(raw / rel)


def empty_store(root: Path) -> None:
    """The project's MLflow store, created and empty, and one input image."""
    from mlflow import MlflowClient

    (root / "project" / ".unetflow").mkdir()
    MlflowClient(f"sqlite:///{root / 'project' / '.unetflow' / 'mlflow.db'}").search_experiments()
    write("imgs/a.png", b"")(root)


def model_package(root: Path) -> None:
    """A valid tiny 2D model package `model.pt` and one image `imgs/a.png`."""
    from unet_core.models import create_model, get_model_config
    from unet_core.package import InferenceSpec, save_package

    config = get_model_config("unet", base_channels=4, depth=2)
    save_package(
        root / "model.pt", create_model(config).state_dict(), config, InferenceSpec((0.0,), (1.0,))
    )
    (root / "imgs").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "imgs" / "a.png")


def _predict(inputs: str, outputs: str, *extra: str) -> tuple[str, ...]:
    return ("predict", "--model", "{root}/model.pt", "--input", inputs, "--output", outputs, *extra)


def _bad_manifest(root: Path) -> None:
    prepared()(root)
    (root / "project" / "prep" / "manifest.json").write_text("{ not json")


def _bad_shard(root: Path) -> None:
    prepared()(root)
    manifest = json.loads((root / "project" / "prep" / "manifest.json").read_text())
    (root / "project" / "prep" / "manifest.json").write_text(
        json.dumps({**manifest, "format_version": 99})
    )


# --- the table -----------------------------------------------------------------------

P = ("--project-dir", "{project}")
TRAIN_RAW = ("train", *P, "--set", "data.path=raw")

CASES: list[Case] = [
    # data files
    Case(
        "corrupt-png",
        broken(_corrupt("images/case1.png")),
        TRAIN_RAW,
        ("case1.png", "cannot read"),
        True,
    ),
    Case(
        "truncated-png",
        broken(_truncate("masks/case2.png")),
        TRAIN_RAW,
        ("case2.png", "cannot read"),
    ),
    Case(
        "corrupt-tiff",
        broken(_corrupt("images/case0.tif"), ext="tif"),
        TRAIN_RAW,
        ("case0.tif", "cannot read"),
    ),
    Case(
        "corrupt-nifti",
        _nifti_folder,
        ("train", *P, "--set", "data.path=raw", "--set", "model.spatial_dims=3"),
        ("case0.nii.gz", "cannot read"),
    ),
    Case(
        "nifti-in-2d",
        broken(lambda raw: (raw / "images" / "x.nii").write_bytes(b"")),
        TRAIN_RAW,
        ("x.nii", "spatial_dims=2"),
    ),
    Case(
        "shape-mismatch",
        broken(_resized("masks/case3.png", (16, 12))),
        TRAIN_RAW,
        ("case3.png", "differs from image"),
    ),
    Case(
        "missing-mask",
        broken(lambda raw: (raw / "masks" / "case4.png").unlink()),
        TRAIN_RAW,
        ("case4", "without a matching mask"),
        True,
    ),
    Case(
        "orphan-mask",
        broken(lambda raw: (raw / "images" / "case5.png").unlink()),
        TRAIN_RAW,
        ("case5", "without a matching image"),
    ),
    Case(
        "non-integer-mask",
        broken(_save_npy("masks/case0.npy", np.full((16, 16), 0.5)), ext="npy"),
        TRAIN_RAW,
        ("case0.npy", "not integer labels"),
    ),
    Case(
        "negative-mask",
        broken(_save_npy("masks/case0.npy", -np.ones((16, 16))), ext="npy"),
        TRAIN_RAW,
        ("case0.npy", "0..255"),
    ),
    Case(
        "nan-image",
        broken(_save_npy("images/case1.npy", np.full((16, 16), np.nan)), ext="npy"),
        TRAIN_RAW,
        ("case1.npy", "NaN"),
    ),
    Case(
        "text-image",
        broken(_save_npy("images/case1.npy", np.full((16, 16), "a")), ext="npy"),
        TRAIN_RAW,
        ("case1.npy", "non-numeric"),
    ),
    Case(
        "rgb-mask",
        broken(lambda raw: _rgb(raw / "masks" / "case0.png")),
        TRAIN_RAW,
        ("case0.png", "single-channel"),
    ),
    Case(
        "rgb-image-for-1-channel",
        broken(lambda raw: _rgb(raw / "images" / "case0.png")),
        TRAIN_RAW,
        ("case0.png", "expected 1"),
    ),
    Case(
        "volume-in-2d",
        broken(_save_npy("images/case0.npy", np.zeros((9, 16, 16))), ext="npy"),
        TRAIN_RAW,
        ("case0.npy", "3D volume"),
    ),
    Case(
        "unsupported-extension",
        broken(lambda raw: (raw / "images" / "case9.jpg").write_bytes(b"x")),
        TRAIN_RAW,
        ("case9.jpg", "unsupported extension"),
    ),
    Case(
        "duplicate-stem",
        broken(_save_npy("images/case0.npy", np.zeros((16, 16)))),
        TRAIN_RAW,
        ("case0", "one file per stem"),
    ),
    Case(
        # With planning on, mixed shapes get a planned patch (tests/unetflow/test_plan.py).
        "mixed-image-shapes",
        broken(
            lambda raw: [_resized(f"{s}/case0.png", (20, 20))(raw) for s in ("images", "masks")]
        ),
        (*TRAIN_RAW, "--no-plan"),
        ("images", "different shapes"),
    ),
    Case("too-few-pairs", folder(3), TRAIN_RAW, ("raw", "empty val/test split", "at least 4")),
    Case(
        "labels-0-3-for-binary",
        folder(labels=(0, 1, 2, 3)),
        TRAIN_RAW,
        ("raw", "loss.mode 'binary'", "multiclass"),
    ),
    Case(
        "labels-beyond-out-channels",
        folder(labels=(0, 1, 2, 3)),
        (*TRAIN_RAW, "--set", "loss.mode=multiclass", "--set", "model.out_channels=2"),
        ("raw", "model.out_channels is 2", "set model.out_channels: 4"),
    ),
    Case("empty-images-folder", folder(0), TRAIN_RAW, ("images", "no images found")),
    # folders
    Case(
        "data-path-missing",
        nothing,
        ("train", *P, "--set", "data.path=nowhere"),
        ("nowhere", "does not exist"),
        True,
    ),
    Case("plan-data-missing", nothing, ("plan", "nowhere", *P), ("nowhere", "does not exist")),
    Case(
        "plan-corrupt-png",
        broken(_corrupt("images/case1.png")),
        ("plan", "raw", *P),
        ("case1.png", "cannot read"),
    ),
    Case(
        "data-path-empty",
        write("project/empty/.keep", ""),
        ("train", *P, "--set", "data.path=empty/.."),
        ("project", "neither"),
    ),
    Case(
        "data-path-empty-folder",
        lambda root: (root / "project" / "void").mkdir(),
        ("train", *P, "--set", "data.path=void"),
        ("void", "empty folder"),
    ),
    Case(
        "data-path-is-a-file",
        write("project/data.csv", "a,b"),
        ("train", *P, "--set", "data.path=data.csv"),
        ("data.csv", "is a file"),
    ),
    Case(
        "data-path-unrecognised",
        write("project/stuff/x.csv", "a,b"),
        ("train", *P, "--set", "data.path=stuff"),
        ("stuff", "neither manifest.json"),
    ),
    Case(
        "manifest-not-json",
        _bad_manifest,
        ("train", *P, "--set", "data.path=prep"),
        ("manifest.json", "cannot read manifest"),
    ),
    Case(
        "manifest-from-the-future",
        _bad_shard,
        ("train", *P, "--set", "data.path=prep"),
        ("manifest.json", "format_version 99"),
    ),
    Case(
        "prepared-channels-differ",
        prepared(channels=3),
        # The plan takes the data's channels: only a config that fixes them is refused.
        ("train", *P, "--no-plan", "--set", "data.path=prep"),
        ("manifest.json", "model.in_channels: 3"),
    ),
    Case(
        "prepared-labels-for-binary",
        prepared(labels=(0, 1, 2)),
        ("train", *P, "--set", "data.path=prep"),
        ("manifest.json", "loss.mode 'binary'"),
    ),
    Case(
        "project-dir-missing",
        nothing,
        ("train", "--project-dir", "{root}/nope"),
        ("nope", "no such folder"),
    ),
    Case("no-dvc-yaml", nothing, ("run", *P), ("dvc.yaml", "missing")),
    Case(
        "params-yaml-bad-source",
        lambda root: (
            dvc_project(root),
            (root / "project" / "params.yaml").write_text("data: {source: ftp}\n"),
        ),
        ("run", *P),
        ("params.yaml", "data.source"),
    ),
    Case(
        "params-yaml-target-spacing-2-values-in-3d",
        lambda root: (
            dvc_project(root),
            (root / "project" / "params.yaml").write_text(
                "data: {spatial_dims: 3, synthetic: {shape: [8, 8, 8]}, target_spacing: [1, 1]}\n"
            ),
        ),
        ("run", *P),
        ("params.yaml", "data.target_spacing", "3 positive"),
    ),
    Case(
        "data-version-not-md5",
        nothing,
        ("train", *P, "--set", "data.version=latest"),
        ("latest", "md5"),
    ),
    # configs
    Case(
        "yaml-syntax",
        write("exp.yaml", "train: {epochs: 3\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("exp.yaml", "not valid YAML", "line"),
        True,
    ),
    Case(
        "yaml-tab-indent",
        write("exp.yaml", "train:\n\tepochs: 3\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("exp.yaml", "not valid YAML"),
    ),
    Case(
        "unknown-key",
        write("exp.yaml", "train: {epoch: 3}\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("exp.yaml", "train.epoch", "Extra inputs"),
    ),
    Case(
        "unknown-section",
        write("exp.yaml", "trainer: {}\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("exp.yaml", "trainer"),
    ),
    Case(
        "wrong-type",
        write("exp.yaml", "train: {epochs: many}\n"),
        ("train", "--config", "{root}/exp.yaml", *P),
        ("exp.yaml", "train.epochs", "many"),
    ),
    Case(
        "negative-batch",
        write("exp.yaml", "train: {batch_size: -1}\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("train.batch_size", "-1"),
    ),
    Case(
        "node-cache-dir-relative",
        write("exp.yaml", "data: {node_cache_dir: scratch/cache}\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("data.node_cache_dir", "scratch/cache", "absolute local folder"),
    ),
    Case(
        "two-problems-one-line",
        write("exp.yaml", "train: {batch_size: -1, epochs: 0}\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("train.batch_size", "train.epochs"),
    ),
    Case(
        "binary-with-3-outputs",
        nothing,
        ("validate", "--set", "model.out_channels=3"),
        ("binary", "out_channels"),
    ),
    Case(
        "unknown-preset",
        write("exp.yaml", "model: {preset: vnet9}\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("vnet9", "unet"),
    ),
    Case(
        "top-level-list",
        write("exp.yaml", "- train\n"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("exp.yaml", "mapping"),
    ),
    Case(
        "config-missing",
        nothing,
        ("validate", "--config", "{root}/nope.yaml"),
        ("nope.yaml", "no such config file"),
    ),
    Case(
        "config-is-binary",
        write("exp.yaml", b"\xff\xfe\x00bad"),
        ("validate", "--config", "{root}/exp.yaml"),
        ("exp.yaml",),
    ),
    Case(
        "set-without-equals",
        nothing,
        ("validate", "--set", "train.epochs"),
        ("train.epochs", "KEY=VALUE"),
    ),
    Case("set-into-a-value", nothing, ("validate", "--set", "name.x=1"), ("name", "valid string")),
    Case(
        "set-empty-key-part",
        nothing,
        ("validate", "--set", "train..epochs=1"),
        ("train..epochs", "empty key"),
    ),
    Case("bad-run-name", nothing, ("validate", "--set", "name=my run!"), ("name", "my run!")),
    # storage URIs
    Case(
        "storage-s3-no-bucket",
        nothing,
        ("validate", "--set", "checkpoint.storage_path=s3://"),
        ("checkpoint.storage_path", "names no bucket"),
    ),
    Case(
        "storage-unknown-scheme",
        nothing,
        ("validate", "--set", "checkpoint.storage_path=gs://b/x"),
        ("checkpoint.storage_path", "unsupported scheme"),
    ),
    Case(
        "storage-bad-bucket",
        nothing,
        ("validate", "--set", "checkpoint.storage_path=s3://My_Bucket/x"),
        ("My_Bucket", "bucket name"),
    ),
    Case(
        "storage-missing-slash",
        nothing,
        ("validate", "--set", "checkpoint.storage_path=s3:/bucket/x"),
        ("s3:/bucket/x", "missing slash"),
    ),
    Case(
        "remote-not-a-url",
        nothing,
        ("data", "remote", "not-a-url://x", *P),
        ("not-a-url://x", "unsupported scheme"),
        True,
    ),
    Case(
        "remote-s3-no-bucket",
        nothing,
        ("data", "remote", "s3://", *P),
        ("s3://", "names no bucket"),
    ),
    Case(
        "remote-bad-endpoint",
        nothing,
        ("data", "remote", "s3://bucket/x", "--endpoint", "ftp://x", *P),
        ("ftp://x", "http"),
    ),
    # search spaces
    Case("space-missing", nothing, ("tune", *P, "--space", "{root}/nope.yaml"), ("nope.yaml",)),
    Case(
        "space-yaml-syntax",
        write("space.yaml", "params: [\n"),
        ("tune", *P, "--space", "{root}/space.yaml"),
        ("space.yaml",),
    ),
    Case(
        "space-unknown-key",
        write("space.yaml", "paramz: {}\n"),
        ("tune", *P, "--space", "{root}/space.yaml"),
        ("space.yaml", "paramz"),
    ),
    Case("tune-without-space", nothing, ("tune", *P), ("--space",)),
    Case(
        "tune-unknown-search-alg",
        nothing,
        ("tune", *P, "--space", "hpo", "--search-alg", "grid-ish"),
        ("grid-ish",),
    ),
    # CLI arguments
    Case("unknown-command", nothing, ("trian",), ("trian", "--help"), True),
    Case("unknown-option", nothing, ("train", "--epochs", "3"), ("--epochs", "--help")),
    Case("predict-missing-args", nothing, ("predict",), ("--model", "required")),
    Case("checkout-not-md5", nothing, ("data", "checkout", "abc", *P), ("abc", "md5")),
    Case(
        "num-samples-not-int", nothing, ("tune", "--num-samples", "many"), ("--num-samples", "many")
    ),
    # model URIs
    Case(
        "model-registry-unknown",
        write("imgs/a.png", b""),
        (
            "predict",
            "--model",
            "models:/nope@champion",
            "--input",
            "{root}/imgs",
            "--output",
            "{root}/out",
        ),
        ("models:/nope@champion",),
        True,
    ),
    Case(
        "model-uri-malformed",
        write("imgs/a.png", b""),
        ("predict", "--model", "models:/", "--input", "{root}/imgs", "--output", "{root}/out"),
        ("models:/",),
    ),
    Case(
        "model-file-garbage",
        write("model.pt", b"garbage"),
        (
            "predict",
            "--model",
            "{root}/model.pt",
            "--input",
            "{root}/imgs",
            "--output",
            "{root}/out",
        ),
        ("model.pt", "cannot load"),
    ),
    Case(
        "model-path-missing",
        nothing,
        (
            "predict",
            "--model",
            "{root}/none.pt",
            "--input",
            "{root}/imgs",
            "--output",
            "{root}/out",
        ),
        ("none.pt", "no such file"),
    ),
    Case(
        "predict-input-missing",
        model_package,
        _predict("{root}/nope", "{root}/out"),
        ("--input", "nope", "not a folder"),
    ),
    Case(
        "predict-input-no-images",
        model_package,
        _predict("{root}", "{root}/out"),
        ("--input", "no images"),
    ),
    Case(
        "predict-output-is-input",
        model_package,
        _predict("{root}/imgs", "{root}/imgs"),
        ("--output", "same as --input"),
    ),
    Case(
        "predict-input-scheme",
        model_package,
        _predict("gs://bucket/x", "{root}/out"),
        ("gs://bucket/x", "s3://bucket/prefix"),
    ),
    Case(
        "predict-output-no-bucket",
        model_package,
        _predict("{root}/imgs", "s3://"),
        ("s3://", "no bucket"),
    ),
    Case(
        "predict-gpu-without-workers",
        model_package,
        _predict("{root}/imgs", "{root}/out", "--gpu"),
        ("--gpu", "--workers"),
    ),
    Case(
        "model-name-not-registered",
        empty_store,
        (
            "predict",
            "--model",
            "models:/nope@champion",
            "--input",
            "{root}/imgs",
            "--output",
            "{root}/out",
            *P,
        ),
        ("models:/nope@champion", "not found"),
    ),
]
