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
from unet_core.engine import load_checkpoint
from unet_core.package import load_package


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


def test_raw_area_with_a_pickle_is_refused(tmp_path: Path) -> None:
    """The DVC `ingest` stage's raw area: arrays that would unpickle are never loaded."""
    import json

    from unet_core.data.prepared import sha256_file
    from unetflow.ingest import RAW_META, read_raw

    marker = tmp_path / "pwned"
    images = np.empty(1, dtype=object)
    images[0] = Payload(marker)
    np.save(tmp_path / "images.npy", images, allow_pickle=True)
    np.save(tmp_path / "masks.npy", np.zeros((1, 4, 4), np.uint8))
    digests = {n: sha256_file(tmp_path / n) for n in ("images.npy", "masks.npy")}
    (tmp_path / RAW_META).write_text(json.dumps({"sha256": digests, "stems": ["a"]}))
    with pytest.raises(ValueError, match="allow_pickle"):
        read_raw(tmp_path)
    assert not marker.exists()
