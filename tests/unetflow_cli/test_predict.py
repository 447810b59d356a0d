"""`unetflow predict`: folders of png/tif/npy/nii.gz images -> masks of the same stems."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unet_core.engine import save_checkpoint
from unet_core.models import create_model, get_model_config
from unet_core.package import InferenceSpec, save_package
from unetflow.config import parse_config
from unetflow_cli.main import main


def _package(tmp_path: Path, preset: str = "unet") -> Path:
    config = get_model_config(preset, base_channels=4, depth=2)
    torch.manual_seed(0)
    weights = create_model(config).state_dict()
    return save_package(tmp_path / f"{preset}.pt", weights, config, InferenceSpec((0.5,), (0.2,)))


@pytest.fixture
def images_2d(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 36), dtype=np.uint8)).save(folder / "a.png")
    tifffile.imwrite(folder / "b.tif", rng.random((33, 47), dtype=np.float32))
    np.save(folder / "c.npy", rng.random((1, 32, 32)).astype(np.float32))
    (folder / "notes.txt").write_text("ignored: not an image")
    return folder


def test_predict_writes_masks_with_same_stems_and_formats(
    tmp_path: Path, images_2d: Path, capsys
) -> None:
    out = tmp_path / "out"
    args = ["predict", "--model", str(_package(tmp_path)), "--input", str(images_2d)]
    assert main([*args, "--output", str(out), "--tta"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.npy"]
    png = np.asarray(Image.open(out / "a.png"))
    assert png.shape == (40, 36) and set(np.unique(png)) <= {0, 255}
    assert tifffile.imread(out / "b.tif").shape == (33, 47)
    npy = np.load(out / "c.npy")
    assert npy.shape == (32, 32) and npy.dtype == np.uint8
    printed = capsys.readouterr().out
    assert "[1/3] a.png (40x36) -> a.png" in printed and "[3/3] c.npy" in printed


def test_predict_3d_nifti_keeps_affine_and_sliding_window(tmp_path: Path) -> None:
    folder, out = tmp_path / "vol", tmp_path / "masks"
    folder.mkdir()
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    volume = np.random.default_rng(1).random((20, 18, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), folder / "scan.nii")
    args = ["predict", "--model", str(_package(tmp_path, "unet3d")), "--input", str(folder)]
    assert main([*args, "--output", str(out), "--patch", "16", "16", "16"]) == 0
    mask = nib.load(out / "scan.nii.gz")
    assert mask.shape == (20, 18, 16) and np.allclose(mask.affine, affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_predict_from_training_checkpoint(tmp_path: Path, images_2d: Path) -> None:
    cfg = parse_config({"model": {"preset": "unet", "base_channels": 4, "depth": 2}})
    spec = InferenceSpec((0.5,), (0.2,))
    state = {
        "epoch": 0,
        "model": create_model(cfg.model).state_dict(),
        "config": cfg.model_dump_json(),
        "inference": json.dumps(spec.__dict__),
    }
    ckpt = save_checkpoint(state, tmp_path / "ckpt" / "checkpoint.pt")
    out = tmp_path / "out"
    # A Ray checkpoint folder works as well as the file inside it.
    assert (
        main(
            [
                "predict",
                "--model",
                str(ckpt.parent),
                "--input",
                str(images_2d),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert len(list(out.iterdir())) == 3


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_input", "--input"),
        ("empty_input", "no images"),
        ("corrupt_image", "bad.png"),
        ("not_a_model", "--model"),
        ("missing_model", "no such file"),
        ("same_output", "same as --input"),
    ],
)
def test_bad_input_fails_with_one_line(tmp_path: Path, capsys, case: str, expected: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    model = str(_package(tmp_path))
    out = str(tmp_path / "out")
    if case == "missing_input":
        folder = tmp_path / "nope"
    elif case == "corrupt_image":
        (folder / "bad.png").write_bytes(b"not a png")
    elif case in ("not_a_model", "missing_model", "same_output"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "x.png")
        if case == "not_a_model":
            (tmp_path / "model.txt").write_text("hello")
            model = str(tmp_path / "model.txt")
        elif case == "missing_model":
            model = str(tmp_path / "missing.pt")
        else:
            out = str(folder)
    code = main(["predict", "--model", model, "--input", str(folder), "--output", out])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error:") and expected in err
