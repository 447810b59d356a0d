"""The DVC `ingest` stage: the data source named in params.yaml -> data/raw.

Sources (`data.source` / `data.folder` in params.yaml):

- `synthetic`: generate the synthetic set from `data.synthetic` (seeded, byte-identical).
- `folder` with a local path: a folder holding `images/` and `masks/`.
- `folder` with `s3://bucket/prefix`: the same layout in S3 (or MinIO, Ceph; endpoint from
  `AWS_ENDPOINT_URL`), downloaded with checksum verification and retries.

Every image and mask is read and checked, then the set is written as
`images.npy` [N, C, *spatial] float32, `masks.npy` [N, *spatial] uint8 and `raw.json`
(stems, shapes, sha256 of both arrays) into a temp folder that is renamed into place.

Run by `dvc repro` as `python -m unetflow.ingest --params params.yaml --out data/raw`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from unet_core.data import DataError, generate_synthetic, load_pair, scan_folder
from unet_core.data.prepared import sha256_file
from unetflow.data_params import DataParams, read_params
from unetflow.errors import UsageError

RAW_META = "raw.json"


def _load_folder(folder: Path, spatial_dims: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    samples = scan_folder(folder, spatial_dims)
    pairs = []
    for k, sample in enumerate(samples, 1):
        pairs.append(load_pair(sample, spatial_dims))
        if k % 500 == 0:
            print(f"read {k}/{len(samples)} image/mask pairs from {folder}", flush=True)
    shapes = {p[0].shape for p in pairs}
    if len(shapes) > 1:
        raise DataError(
            folder,
            f"images have different shapes {sorted(shapes)[:3]}; "
            "resample them to one shape before preparing",
        )
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    return images, masks, [s.stem for s in samples]


def load_source(
    params: DataParams, staging: Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read (or generate) the source: `(images [N, C, *sp], masks [N, *sp], stems)`.

    Args:
        params: the `data` section of params.yaml.
        staging: where an `s3://` source is downloaded (a temp folder when None).
    """
    if params.source == "synthetic":
        syn = params.synthetic
        images, masks = generate_synthetic(syn.num_images, tuple(syn.shape), seed=syn.seed)
        return images, masks, [f"synthetic-{i:05d}" for i in range(len(images))]
    if not params.folder.startswith("s3://"):
        return _load_folder(Path(params.folder), params.spatial_dims)
    from unetflow import s3

    with tempfile.TemporaryDirectory(prefix="unetflow-s3-", dir=staging) as tmp:
        s3.download_prefix(params.folder, Path(tmp))
        return _load_folder(Path(tmp), params.spatial_dims)


def write_raw(
    out: Path, images: np.ndarray, masks: np.ndarray, stems: list[str], meta: dict
) -> None:
    """Write the raw area atomically: a temp sibling folder renamed onto `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out.parent))
    try:
        np.save(staging / "images.npy", np.ascontiguousarray(images, dtype=np.float32))
        np.save(staging / "masks.npy", np.ascontiguousarray(masks, dtype=np.uint8))
        info = {
            **meta,
            "count": len(images),
            "image_shape": list(images.shape[1:]),
            "stems": list(stems),
            "sha256": {n: sha256_file(staging / n) for n in ("images.npy", "masks.npy")},
        }
        (staging / RAW_META).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_raw(raw: Path) -> dict:
    """`raw.json` of a raw area, after checking both arrays' sha256 (streamed, not loaded)."""
    try:
        info = json.loads((raw / RAW_META).read_text())
    except FileNotFoundError:
        raise DataError(
            raw, "no raw.json: run the ingest stage first (`dvc repro ingest`)"
        ) from None
    for name, digest in info["sha256"].items():
        if sha256_file(raw / name) != digest:
            raise DataError(raw / name, "sha256 differs from raw.json; re-run `dvc repro ingest`")
    return info


def read_raw(raw: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a raw area written by `write_raw`, checking the arrays' sha256."""
    info = check_raw(raw)
    images = np.load(raw / "images.npy", allow_pickle=False)
    masks = np.load(raw / "masks.npy", allow_pickle=False)
    return images, masks, list(info["stems"])


def ingest(params: DataParams, out: Path) -> None:
    """Read the source named by `params` and write it to the raw area `out`."""
    images, masks, stems = load_source(params, staging=out.parent if out.parent.exists() else None)
    where = params.folder if params.source == "folder" else "synthetic"
    write_raw(out, images, masks, stems, {"source": params.source, "location": where})
    print(
        f"ingested {len(images)} images of shape {list(images.shape[1:])} from {where} into {out}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    args = parser.parse_args(argv)
    try:
        ingest(read_params(args.params), args.out)
    except (DataError, UsageError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
