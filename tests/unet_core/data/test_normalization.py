"""Every normalisation mode gives the same inputs in the training loaders and in the
Segmenter (the one inference path), because both call one function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.data import PatchStream, PreparedDataset, write_case, write_manifest
from unet_core.data.normalization import Normalization
from unet_core.data.manifest import read_manifest
from unet_core.data.prepared import normalization_for
from unet_core.models import create_model, get_model_config
from unet_core.package import InferenceSpec, Segmenter

MODES = {
    "dataset": Normalization(),
    "per_image": Normalization(mode="per_image"),
    "ct": Normalization(mode="ct", clip=(-100.0, 200.0), mean=(50.0,), std=(30.0,)),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("norm")
    rng = np.random.default_rng(1)
    cases = []
    for i, split in enumerate(["train", "train", "val"]):
        image = (rng.normal(100 * i, 300 + 50 * i, (1, 16, 16))).astype(np.int16)
        mask = (rng.random((16, 16)) > 0.5).astype(np.uint8)
        cases.append(write_case(root, f"c{i}", split, image, mask))
    write_manifest(root, cases)
    return root


@pytest.mark.parametrize("mode", MODES)
def test_loader_and_segmenter_normalise_alike(prepared: Path, mode: str) -> None:
    norm = MODES[mode]
    data = PreparedDataset(prepared, "val", normalization=norm)
    trained_on = data[0][0].numpy()
    raw = torch.from_numpy(data.raw(0)[0][None])
    resolved = normalization_for(read_manifest(prepared), norm)
    spec = InferenceSpec(
        mean=resolved.mean or (0.0,),
        std=resolved.std or (1.0,),
        normalization=mode,
        clip=resolved.clip,
    )
    model = create_model(get_model_config("unet", base_channels=2, depth=1))
    served = Segmenter(model, model.config, InferenceSpec.from_json(spec.to_json()))
    np.testing.assert_allclose(served.spec.normalize(raw)[0].numpy(), trained_on, rtol=1e-5)
    if mode == "ct":
        assert trained_on.max() <= (200 - 50) / 30 + 1e-5  # clipped before scaling
    if mode == "per_image":
        assert abs(trained_on.mean()) < 1e-4 and abs(trained_on.std() - 1) < 1e-3


def test_a_patch_takes_its_whole_case_statistics_in_per_image_mode(prepared: Path) -> None:
    norm = MODES["per_image"]
    whole = PreparedDataset(prepared, "train", normalization=norm)
    stream = PatchStream(str(prepared), "train", (16, 16), samples=4, normalization=norm)
    patches = {tuple(np.round(p.flatten()[:5].numpy(), 4)) for p, _ in stream}
    cases = {tuple(np.round(whole[i][0].flatten()[:5].numpy(), 4)) for i in range(len(whole))}
    assert patches <= cases  # a full-size patch equals its normalised case
