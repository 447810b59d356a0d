"""A checkpoint, model package or data file carrying a malicious pickle is refused, and
nothing it holds runs: its payload would create a marker file, which must not exist.

Every loader of the project is covered: `torch.load` sites (checkpoints, packages, and
`unetflow predict`, which loads both) and `np.load` sites (npy images, npz shards).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.data import DataError, read_array
from unet_core.data.prepared import read_shard
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


def test_shard_with_a_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    stems = np.empty(1, dtype=object)
    stems[0] = Payload(marker)
    shard = tmp_path / "train-00000.npz"
    np.savez(
        shard, images=np.zeros((1, 1, 4, 4), np.float32), masks=np.zeros((1, 4, 4)), stems=stems
    )
    assert zipfile.is_zipfile(shard)
    with pytest.raises(DataError, match=r"train-00000\.npz"):
        read_shard(shard)
    assert not marker.exists()
