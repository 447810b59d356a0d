"""Target spacing end to end: prepare resamples every case, predict maps masks back."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from unet_core.data import DataError, read_manifest
from unet_core.data.resample import resample_image, resample_mask
from unet_core.models import create_model, get_model_config
from unet_core.package import InferenceSpec, load_package, save_package
from unetflow import prediction
from unetflow.builders import inference_spec
from unetflow.config import parse_config
from unetflow.datasets import resolve_for
from unetflow.prepare import main as prepare_main

TARGET = (1.0, 1.0, 1.0)


def _affine(spacing: tuple[float, ...], shift: tuple[float, ...]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = shift
    return affine


def _volumes(root: Path) -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
    """Four tiny int16 NIfTI pairs, each with its own spacing, shape and origin."""
    spacings = [(2.0, 1.0, 1.0), (1.0, 0.5, 0.5), (1.5, 0.8, 1.2), (1.0, 1.0, 1.0)]
    rng, geometry = np.random.default_rng(3), {}
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, spacing in enumerate(spacings):
        shape, affine = (6 + i, 10, 9), _affine(spacing, (-5.0 * i, 3.0, 7.0))
        image = rng.integers(0, 500, shape).astype(np.int16)
        mask = ((image > 300).astype(np.uint8) + (image > 450)).astype(np.uint8)  # 0, 1, 2
        nib.save(nib.Nifti1Image(image, affine), root / "images" / f"ct{i}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), root / "masks" / f"ct{i}.nii.gz")
        geometry[f"ct{i}"] = (shape, affine)
    return geometry


def _params(path: Path, folder: Path, target: object) -> Path:
    data = {"source": "folder", "folder": str(folder), "spatial_dims": 3, "workers": 2}
    data |= {"split": {"fractions": [0.5, 0.25, 0.25]}, "target_spacing": target}
    path.write_text(yaml.safe_dump({"data": data}))
    return path


def test_prepare_resamples_every_case_to_the_target_spacing(tmp_path: Path) -> None:
    geometry = _volumes(tmp_path / "src")
    params = _params(tmp_path / "params.yaml", tmp_path / "src", list(TARGET))
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "prep")]) == 0
    manifest = read_manifest(tmp_path / "prep")
    assert manifest.target_spacing == TARGET
    # A model trained on it carries the target into prediction.
    assert inference_spec(parse_config({}), manifest).target_spacing == TARGET
    assert manifest.labels == (0, 1, 2)  # nearest neighbour invents no label
    for case in manifest.cases:
        shape, affine = geometry[case.stem]
        spacing = tuple(np.diag(affine)[:3])
        assert case.spacing == TARGET and case.dtype == "<i2"  # int16 stays int16
        assert case.source is not None and case.source.shape == shape
        assert case.source.spacing == pytest.approx(spacing)
        assert case.shape == tuple(round(n * s) for n, s in zip(shape, spacing, strict=True))
        # Same origin, voxel axes scaled to the target: the world stays where it was.
        assert np.allclose(case.affine, affine @ np.diag([*(1 / s for s in spacing), 1.0]))


def test_a_bad_target_spacing_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    params = _params(tmp_path / "params.yaml", tmp_path, [1.0, 0.0, 1.0])
    assert prepare_main(["--params", str(params), "--out", str(tmp_path / "prep")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "params.yaml" in err and "data.target_spacing" in err and "positive" in err
    assert not (tmp_path / "prep").exists()


def _package(path: Path, target: tuple[float, ...] | None) -> Path:
    config = get_model_config("unet3d", base_channels=4, depth=2)
    torch.manual_seed(0)
    spec = InferenceSpec((250.0,), (150.0,), target_spacing=target)
    return save_package(path, create_model(config).state_dict(), config, spec)


def test_predict_resamples_to_the_training_spacing_and_back(tmp_path: Path) -> None:
    segmenter = load_package(_package(tmp_path / "model.pt", TARGET))
    assert segmenter.spec.target_spacing == TARGET
    spacing, shape = (2.0, 0.6, 0.8), (8, 24, 20)
    affine = _affine(spacing, (-40.0, 12.0, 3.0))
    volume = np.random.default_rng(0).integers(0, 500, shape).astype(np.int16)
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "in" / "ct.nii.gz")
    jobs, _ = prediction.plan_jobs(prediction.list_images(str(tmp_path / "in"), 3), str(tmp_path))
    list(prediction.run_local(segmenter, jobs, prediction.Options()))
    written = nib.load(tmp_path / "ct.nii.gz")
    assert written.shape == shape and np.allclose(written.affine, affine)
    # The model saw the volume on the training grid: predict there by hand and map back.
    moved = torch.from_numpy(resample_image(volume[None], spacing, TARGET)[None])
    expected = resample_mask(segmenter(moved)[0].numpy(), TARGET, spacing, shape=shape)
    native = segmenter(torch.from_numpy(volume[None, None]))[0].numpy()
    mask = np.asarray(written.dataobj)
    assert np.array_equal(mask, expected)
    assert not np.array_equal(mask, native)  # what the native-grid path would have written


def test_training_from_a_raw_folder_resamples_to_data_target_spacing(tmp_path: Path) -> None:
    geometry = _volumes(tmp_path / "raw")
    model = {"preset": "unet3d", "base_channels": 4, "depth": 2, "out_channels": 3}
    data = {"path": "raw", "patch_size": [4, 4, 4], "target_spacing": list(TARGET)}
    cfg = parse_config({"model": model, "data": data, "loss": {"mode": "multiclass"}})
    resampled, version = resolve_for(tmp_path, cfg)
    manifest = read_manifest(resampled)
    assert manifest.target_spacing == TARGET and inference_spec(cfg, manifest).target_spacing
    for case in manifest.cases:
        shape, affine = geometry[case.stem]
        spacing = tuple(np.diag(affine)[:3])
        assert case.spacing == TARGET and case.source is not None
        assert case.shape == tuple(round(n * s) for n, s in zip(shape, spacing, strict=True))
    # Without a target the same folder is another data version, at native spacing.
    native_cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"target_spacing": None})}
    )
    native, other = resolve_for(tmp_path, native_cfg)
    assert other != version and read_manifest(native).target_spacing is None
    # A prepared set is trained only at the spacing it was prepared at.
    cfg_on_native = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"path": str(native)})}
    )
    with pytest.raises(DataError, match=r"native spacings but data\.target_spacing"):
        resolve_for(tmp_path, cfg_on_native)
