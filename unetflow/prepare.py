"""The DVC `prepare` stage: params.yaml -> data/prepared (shards + manifest).

Run by `dvc repro` as `python -m unetflow.prepare --params params.yaml --out data/prepared`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unet_core.data import (
    DataError,
    generate_synthetic,
    load_pair,
    scan_folder,
    split_indices,
    write_prepared,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyntheticParams(_Frozen):
    num_images: int = Field(240, ge=3)
    shape: tuple[int, ...] = (64, 64)
    seed: int = 42


class SplitParams(_Frozen):
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitParams:
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) <= 0:
            raise ValueError(f"fractions {self.fractions} must be positive and sum to 1")
        return self


class DataParams(_Frozen):
    source: Literal["synthetic", "folder"] = "synthetic"
    folder: str | None = None
    spatial_dims: Literal[2, 3] = 2
    synthetic: SyntheticParams = SyntheticParams()
    split: SplitParams = SplitParams()
    shard_size: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> DataParams:
        if self.source == "folder" and not self.folder:
            raise ValueError("source is 'folder' but data.folder is empty; set data.folder")
        if self.source == "synthetic" and len(self.synthetic.shape) != self.spatial_dims:
            raise ValueError(
                f"synthetic.shape {list(self.synthetic.shape)} has {len(self.synthetic.shape)} "
                f"axes but spatial_dims is {self.spatial_dims}; make them agree"
            )
        return self


def read_params(path: Path) -> DataParams:
    """Parse the `data` section of params.yaml; errors name the file and field."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return DataParams.model_validate(raw.get("data", {}))
    except FileNotFoundError:
        raise DataError(path, "no such params file; pass --params PATH") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(path, f"data.{where}: {first['msg']}") from None


def _load_source(params: DataParams) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if params.source == "synthetic":
        syn = params.synthetic
        images, masks = generate_synthetic(syn.num_images, tuple(syn.shape), seed=syn.seed)
        return images, masks, [f"synthetic-{i:05d}" for i in range(len(images))]
    samples = scan_folder(params.folder, params.spatial_dims)
    pairs = [load_pair(s, params.spatial_dims) for s in samples]
    shapes = {p[0].shape for p in pairs}
    if len(shapes) > 1:
        raise DataError(
            params.folder,
            f"images have different shapes {sorted(shapes)[:3]}; "
            "resample them to one shape before preparing",
        )
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    return images, masks, [s.stem for s in samples]


def prepare(params: DataParams, out: Path) -> None:
    """Build the prepared data set in a temp folder, then move it into place."""
    images, masks, stems = _load_source(params)
    idx = split_indices(len(images), params.split.fractions, seed=params.split.seed)
    splits = {name: (images[i], masks[i], [stems[j] for j in i]) for name, i in idx.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out.parent))
    try:
        write_prepared(
            staging, splits, shard_size=params.shard_size,
            meta={"source": params.source, "params": params.model_dump(mode="json")},
        )  # fmt: skip
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)  # nothing half-written is ever left at `out`
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = {k: len(v) for k, v in idx.items()}
    print(f"prepared {sum(counts.values())} images into {out}: {counts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    args = parser.parse_args(argv)
    try:
        prepare(read_params(args.params), args.out)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
