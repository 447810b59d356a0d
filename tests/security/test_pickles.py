"""A checkpoint, model package or data file carrying a malicious pickle is refused, and
nothing it holds runs: its payload would create a marker file, which must not exist.

Every loader of the project is covered: `torch.load` sites (checkpoints, packages, and
`unetflow predict`, which loads both) and `np.load` sites (npy images, npz shards).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.data import DataError, read_array
from unet_core.data.manifest import sha256_file
from unet_core.engine import load_checkpoint
from unet_core.package import load_package
from unetflow.data_params import DataParams


class Payload:
    """Unpickling this creates `marker`: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_torch_file(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "config": Payload(marker)}, path)
    return path


def test_the_payload_is_live_when_loaded_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.load(_evil_torch_file(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()  # so its absence below means the loader refused it


@pytest.mark.parametrize(
    "load",
    [load_checkpoint, load_package],
    ids=["checkpoint", "package"],
)
def test_torch_loaders_refuse_pickled_code(tmp_path: Path, load) -> None:
    marker = tmp_path / "pwned"
    path = _evil_torch_file(tmp_path / "evil.pt", marker)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "checkpoint.pt"])
def test_predict_refuses_a_pickled_model_in_one_line(tmp_path: Path, capsys, name) -> None:
    from unetflow_cli.main import main

    marker = tmp_path / "pwned"
    path = _evil_torch_file(tmp_path / name, marker)
    (tmp_path / "imgs").mkdir()
    code = main(
        [
            "predict",
            "--model",
            str(path),
            "--input",
            str(tmp_path / "imgs"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot load" in err[0]
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_npy_with_a_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    array = np.empty(1, dtype=object)
    array[0] = Payload(marker)
    np.save(tmp_path / "evil.npy", array, allow_pickle=True)
    with pytest.raises(DataError, match=r"evil\.npy"):
        read_array(tmp_path / "evil.npy")
    assert not marker.exists()


def test_raw_area_with_a_pickle_is_refused(project_dir: Path, tmp_path: Path, capsys) -> None:
    """The DVC `ingest` stage's raw area: an npy case that would unpickle is never loaded,
    even with a matching sha256 in raw.json."""
    from unetflow.ingest import RawCase, write_meta
    from unetflow.prepare import main as prepare_main

    raw, marker = tmp_path / "raw", tmp_path / "pwned"
    images = np.empty(1, dtype=object)
    images[0] = Payload(marker)
    cases = []
    for stem in ("a", "b", "c"):
        for sub in ("images", "masks"):
            (raw / sub).mkdir(parents=True, exist_ok=True)
            np.save(
                raw / sub / f"{stem}.npy",
                images if stem == "b" else np.zeros((4, 4), np.uint8),
                allow_pickle=True,
            )
        digests = (
            sha256_file(raw / "images" / f"{stem}.npy"),
            sha256_file(raw / "masks" / f"{stem}.npy"),
        )
        cases.append(RawCase(stem, f"images/{stem}.npy", f"masks/{stem}.npy", digests))
    write_meta(raw, cases, DataParams())
    args = ["--params", str(project_dir / "params.yaml"), "--raw", str(raw), "--workers", "1"]
    assert prepare_main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "b.npy" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()
