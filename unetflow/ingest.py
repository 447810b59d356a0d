"""The DVC `ingest` stage: the data source named in params.yaml -> data/raw.

Sources (`data.source` / `data.folder` in params.yaml):

- `synthetic`: generate the synthetic set from `data.synthetic` (seeded, byte-identical),
  saved as one `.npy` pair per case.
- `folder` with a local path: the image/mask pairs of its `images/` and `masks/`, copied.
- `folder` with `s3://bucket/prefix`: the same layout in S3 (or MinIO, Ceph; endpoint from
  `AWS_ENDPOINT_URL`), downloaded with checksum verification and retries. Other keys
  under the prefix are left where they are.

The raw area has the source's layout (`images/<stem>.<ext>`, `masks/<stem>.<ext>`), each
file as it is: any shape, dtype or format that `prepare` reads (PNG, TIFF, NPY, NIfTI with
its affine). Next to them, `raw.json` lists the cases in stem order with each file's
sha256. Pairing is checked from the file names before any file moves; reading and checking
each case is `prepare`'s work, one case per process. Files move through a bounded pool of
threads (`--threads`), each one streamed to disk, so ingest holds no image in memory and
its peak RAM does not grow with the data set. Everything is written into a temp sibling
folder that is renamed onto `out`.

Run by `dvc repro` as `python -m unetflow.ingest --params params.yaml --out data/raw`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_core.data import DataError, generate_synthetic, scan_folder
from unet_core.data.folder import check_pairs, stems_of
from unet_core.data.manifest import sha256_file
from unetflow.data_params import DataParams, read_params
from unetflow.errors import UsageError

RAW_META = "raw.json"
RAW_FORMAT = 2  # 1 (no "format" key): images.npy + masks.npy, one shape for all cases
THREADS = 8  # files in flight at once: I/O-bound, so more than the cores
REINGEST = "re-run the ingest stage (`dvc repro ingest`, or `unetflow data prepare --refresh`)"
MB = 1 << 20

# (stem, image file, mask file), the files relative to the source and to the raw area.
Pair = tuple[str, str, str]
# Puts the source's file `rel` at `dest` and returns the sha256 of what it wrote.
Transfer = Callable[[str, Path], str]


@dataclass(frozen=True)
class RawCase:
    """One case of the raw area, as `raw.json` lists it."""

    stem: str
    image: str  # relative to the raw area: images/<stem>.<ext>
    mask: str
    sha256: tuple[str, str]  # of the image file and of the mask file


def _copy(src: Path, dest: Path) -> str:
    """Copy through one reused 1 MiB buffer, hashing on the way; returns the sha256."""
    digest, buffer = hashlib.sha256(), bytearray(MB)
    view = memoryview(buffer)
    with src.open("rb") as fin, dest.open("wb") as fout:
        while size := fin.readinto(buffer):
            digest.update(view[:size])
            fout.write(view[:size])
    return digest.hexdigest()


def _folder_source(folder: Path, spatial_dims: int) -> tuple[list[Pair], Transfer]:
    samples = scan_folder(folder, spatial_dims)
    pairs = [(s.stem, f"images/{s.image_path.name}", f"masks/{s.mask_path.name}") for s in samples]
    return pairs, lambda rel, dest: _copy(folder / rel, dest)


def _s3_source(uri: str, spatial_dims: int, threads: int) -> tuple[list[Pair], Transfer]:
    """The pairs under `uri`, checked from the listing alone, and their download."""
    from unetflow import s3

    client = s3.client(pool=threads)
    bucket, prefix = s3.parse_uri(uri)
    base = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    names: dict[str, list[str]] = {"images": [], "masks": []}
    for obj in s3.list_objects(client, uri):
        sub, _, name = obj.key.removeprefix(base).partition("/")
        if obj.key.startswith(base) and sub in names and name and "/" not in name:
            names[sub].append(name)
    root = uri.rstrip("/")
    images = stems_of(names["images"], spatial_dims, f"{root}/images")
    masks = stems_of(names["masks"], spatial_dims, f"{root}/masks")
    check_pairs(images, masks, root, spatial_dims)
    pairs = [(stem, f"images/{images[stem]}", f"masks/{masks[stem]}") for stem in sorted(images)]
    # One connection per thread; no per-object thread pools, which would each keep
    # their own buffers and allocator arenas.
    transfer = s3.transfer_config(threads=False)

    def fetch(rel: str, dest: Path) -> str:
        s3.download_file(client, bucket, base + rel, dest, transfer=transfer)
        return sha256_file(dest)

    return pairs, fetch


def _move_all(pairs: Sequence[Pair], transfer: Transfer, dest: Path, threads: int) -> list[RawCase]:
    """Transfer every pair into `dest` with `threads` threads; the cases in `pairs` order."""

    def one(pair: Pair) -> RawCase:
        stem, image, mask = pair
        return RawCase(
            stem, image, mask, (transfer(image, dest / image), transfer(mask, dest / mask))
        )

    cases = []
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ingest") as pool:
        try:
            for k, case in enumerate(pool.map(one, pairs), 1):
                cases.append(case)
                if k % 500 == 0 or k == len(pairs):
                    print(f"ingested {k}/{len(pairs)} cases", flush=True)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed case stops the rest, not only itself
            raise
    return cases


def _save(path: Path, array: np.ndarray) -> str:
    np.save(path, array, allow_pickle=False)
    return sha256_file(path)


def _write_synthetic(params: DataParams, dest: Path) -> list[RawCase]:
    """The synthetic set, one `.npy` pair per case (images [1, *sp] float32, masks uint8)."""
    syn = params.synthetic
    images, masks = generate_synthetic(syn.num_images, tuple(syn.shape), seed=syn.seed)
    cases = []
    for i in range(len(images)):
        stem = f"synthetic-{i:05d}"
        image, mask = f"images/{stem}.npy", f"masks/{stem}.npy"
        digests = (_save(dest / image, images[i]), _save(dest / mask, masks[i]))
        cases.append(RawCase(stem, image, mask, digests))
    return cases


def ingest_into(params: DataParams, dest: Path, threads: int = THREADS) -> list[RawCase]:
    """Write the source's cases into the existing, empty folder `dest` (no `raw.json`)."""
    (dest / "images").mkdir()
    (dest / "masks").mkdir()
    if params.source == "synthetic":
        return _write_synthetic(params, dest)
    if params.folder.startswith("s3://"):
        pairs, transfer = _s3_source(params.folder, params.spatial_dims, threads)
    else:
        pairs, transfer = _folder_source(Path(params.folder), params.spatial_dims)
    return _move_all(pairs, transfer, dest, threads)


def write_meta(dest: Path, cases: Sequence[RawCase], params: DataParams) -> None:
    info = {
        "format": RAW_FORMAT,
        "source": params.source,
        "location": params.folder if params.source == "folder" else "synthetic",
        "count": len(cases),
        "cases": [
            {"stem": c.stem, "image": c.image, "mask": c.mask, "sha256": list(c.sha256)}
            for c in cases
        ],
    }
    (dest / RAW_META).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def check_raw(raw: Path) -> list[RawCase]:
    """The cases of a raw area, after checking that every file `raw.json` lists is there.

    The files' sha256 are checked where they are read (`prepare`, one case per process).
    """
    try:
        info = json.loads((raw / RAW_META).read_text())
    except FileNotFoundError:
        raise DataError(raw, f"no {RAW_META}; {REINGEST}") from None
    if not isinstance(info, dict) or info.get("format") != RAW_FORMAT:
        raise DataError(
            raw / RAW_META,
            f"written by an older ingest (one stacked array for all cases); {REINGEST}",
        )
    cases = [RawCase(c["stem"], c["image"], c["mask"], tuple(c["sha256"])) for c in info["cases"]]
    for rel in (rel for case in cases for rel in (case.image, case.mask)):
        if not (raw / rel).is_file():
            raise DataError(raw / rel, f"listed in {RAW_META} but missing; {REINGEST}")
    return cases


def ingest(params: DataParams, out: Path, threads: int = THREADS) -> None:
    """Read the source named by `params` and write it to the raw area `out` (atomically)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out.parent))
    try:
        cases = ingest_into(params, staging, threads)
        write_meta(staging, cases, params)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)  # nothing half-written is ever left at `out`
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    where = params.folder if params.source == "folder" else "synthetic"
    print(f"ingested {len(cases)} cases from {where} into {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument(
        "--threads", type=int, default=THREADS, help=f"files in flight (default {THREADS})"
    )
    args = parser.parse_args(argv)
    try:
        if args.threads < 1:
            raise UsageError(f"--threads {args.threads}: give 1 or more")
        ingest(read_params(args.params), args.out, args.threads)
    except (DataError, UsageError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
