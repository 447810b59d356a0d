"""NodeCache: remote cases land once per node on local disk, shared by its processes.

A real S3 endpoint (moto server over HTTP); the "processes of one node" are real
subprocesses sharing one cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.s3 import S3Endpoint, s3_server_in_env
from unet_core.data import DataError, PatchStream, PreparedStore, write_case, write_manifest
from unet_core.data.manifest import content_sha256
from unet_core.data.node_cache import TMP, NodeCache

ROOT = Path(__file__).resolve().parents[3]
BUCKET = "node-cache"
SHAPES = [(12, 14, 16), (16, 12, 10), (20, 18, 12), (9, 9, 9), (14, 10, 12), (10, 16, 8)]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 3D cases of different shapes, noise (compresses badly, so sizes are real)."""
    root = tmp_path_factory.mktemp("node-cache-src")
    rng = np.random.default_rng(3)
    cases = []
    for k, shape in enumerate(SHAPES):
        image = rng.normal(0, 50, (1, *shape)).astype(np.int16)
        mask = (rng.random(shape) > 0.9).astype(np.uint8)
        cases.append(write_case(root, f"n{k}", "train", image, mask, chunks=(8, 8, 8)))
    write_manifest(root, cases, chunks=(8, 8, 8))
    return root


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    with s3_server_in_env(BUCKET) as server:
        yield server


def _upload(s3: S3Endpoint, local: Path, prefix: str) -> str:
    return s3.upload_folder(local, BUCKET, prefix)


@pytest.fixture(scope="module")
def uri(s3: S3Endpoint, local: Path) -> str:
    """The cases in S3, for the tests that leave the bucket as it is."""
    return _upload(s3, local, "read-only")


# Reads every case whole through the node cache, checks its content hash, prints counters.
READER = r"""
import json, sys
from unet_core.data import PreparedStore
from unet_core.data.node_cache import NodeCache
cache = NodeCache(sys.argv[2], 10**8)
store = PreparedStore(sys.argv[1], node_cache=cache)
for case in store.manifest.cases:
    store.load_case(case.stem, verify=True)
print(json.dumps({"hits": cache.hits, "misses": cache.misses}))
"""


def _reader(uri: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", READER, uri, str(folder)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict[str, int]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_processes_of_a_node_download_each_case_once(
    s3: S3Endpoint, local: Path, tmp_path: Path
) -> None:
    uri = _upload(s3, local, "shared")
    folder = tmp_path / "cache"
    # Two processes at once: the per-case lock lets one download while the other waits.
    first = [_result(p) for p in [_reader(uri, folder), _reader(uri, folder)]]
    assert sum(r["misses"] for r in first) == len(SHAPES)
    assert len(list(folder.glob("*.zip"))) == len(SHAPES)
    # The case objects are gone from the bucket: a third process reads only the cache
    # (every hash still checked against the manifest, which stays in S3).
    client = s3.client()
    for item in client.list_objects_v2(Bucket=BUCKET, Prefix="shared/cases/")["Contents"]:
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    third = _result(_reader(uri, folder))
    assert third == {"hits": 2 * len(SHAPES), "misses": 0}  # image + mask per case


def test_cached_patches_equal_uncached_ones(uri: str, tmp_path: Path) -> None:
    cache = NodeCache(tmp_path / "cache", 10**8)

    def patches(root: str, node_cache: NodeCache | None) -> list[tuple[torch.Tensor, ...]]:
        return list(PatchStream(root, "train", (8, 8, 8), samples=12, node_cache=node_cache))

    direct = patches(uri, None)
    for run in (patches(uri, cache), patches(uri, cache)):  # filling, then warm
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            for a, b in zip(direct, run, strict=True)
        )
    # Each case drawn was downloaded once, by the first stream; the second only hit.
    assert 0 < cache.misses == len(cache.entries()) <= cache.hits


def test_the_byte_bound_holds_and_evicted_files_stay_readable(
    uri: str, local: Path, tmp_path: Path
) -> None:
    sizes = sorted(
        sum(f.stat().st_size for f in (local / "cases" / f"n{k}.zarr").rglob("*") if f.is_file())
        for k in range(len(SHAPES))
    )
    budget = 4 * sizes[-1] + 4096  # every case is admitted; about 4 fit at once
    cache = NodeCache(tmp_path / "cache", budget)
    # A folder shared with other files (data.node_cache_dir: /local_nvme): eviction
    # deletes only the cache's own names.
    (tmp_path / "cache").mkdir(mode=0o700)
    theirs = [tmp_path / "cache" / name for name in ("backup.zip", f"{'ab' * 31}.zip")]
    for path in theirs:
        path.write_bytes(b"x" * budget)
    reader = PreparedStore(uri, node_cache=cache)
    held = reader.image("n0")  # opens n0's cached file and keeps it open
    other = PreparedStore(uri, node_cache=NodeCache(tmp_path / "cache", budget))
    for _ in range(2):
        for case in other.manifest.cases:
            other.load_case(case.stem, verify=True)
            assert sum(s.st_size for s in cache.entries()) <= budget
            other._handles.clear()  # reopen each time: every read goes through the cache
    assert other.node_cache is not None and other.node_cache.misses > len(SHAPES)  # evicted
    n0 = cache.path(other.case("n0").sha256)
    assert not n0.exists()  # evicted while `held` had it open
    # The open handle reads on from the unlinked file, chunk by chunk.
    assert np.array_equal(held[...], PreparedStore(local).image("n0")[...])
    # Its next use finds the file gone: the store drops the handle (so the deleted
    # file's blocks are freed, not held beyond the bound) and fills the case again.
    assert cache.misses == 1
    again = reader.image("n0")
    assert again is not held and n0.exists() and cache.misses == 2
    assert all(path.exists() for path in theirs)


def test_a_link_in_place_of_the_default_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    # In the shared temp dir another user could plant a link to any folder of ours.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / f"unetflow-node-cache-{os.getuid()}").symlink_to(tmp_path / "elsewhere")
    cache = NodeCache(None, 10**8)
    with pytest.raises(DataError, match="not a folder of this user"):
        cache.fill("0" * 64, 10, lambda tmp: tmp.write_bytes(b"0" * 10))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_stored_case_hashes_chunk_row_by_chunk_row_to_its_manifest_sha256(
    local: Path,
) -> None:
    # How a download is checked: from the zarr arrays, never decoded whole (the 8^3
    # chunks split every case into several rows, the last one partial).
    store = PreparedStore(local)
    for case in store.manifest.cases:
        assert content_sha256(store.image(case.stem), store.mask(case.stem)) == case.sha256


def test_partial_or_corrupt_downloads_are_never_used(
    s3: S3Endpoint, local: Path, tmp_path: Path
) -> None:
    uri = _upload(s3, local, "corrupt")
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    key = PreparedStore(local).case("n1").sha256
    # Left by fillers that died mid-download: one just now, one two hours ago.
    fresh, stale = folder / f"{TMP}{key}-1-aaaa", folder / f"{TMP}{key}-2-bbbb"
    for junk in (fresh, stale):
        junk.write_bytes(b"PK\x03\x04 half a zip")
    os.utime(stale, (time.time() - 7200,) * 2)
    cache = NodeCache(folder, 10**8)
    store = PreparedStore(uri, node_cache=cache)
    store.load_case("n1", verify=True)  # downloaded anew and checked, the junk ignored
    assert cache.misses == 1 and (folder / f"{key}.zip").exists()
    assert fresh.exists() and not stale.exists()  # a live filler's may still be growing

    # A chunk corrupted in storage: the download fails its check and nothing is cached.
    bad = store.case("n2").sha256
    client = s3.client()
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix="corrupt/cases/n2.zarr/image/c/")
    client.put_object(Bucket=BUCKET, Key=listing["Contents"][0]["Key"], Body=b"not zstd")
    with pytest.raises(DataError, match=r"n2\.zarr.*cannot read downloaded case"):
        store.load_case("n2")
    assert not (folder / f"{bad}.zip").exists()
    assert [p.name for p in folder.glob(f"{TMP}{bad}*")] == []


def test_a_local_data_set_is_read_in_place(local: Path, tmp_path: Path) -> None:
    cache = NodeCache(tmp_path / "cache", 10**8)
    store = PreparedStore(local, node_cache=cache)
    store.load_case("n0", verify=True)
    assert store.node_cache is None and not (tmp_path / "cache").exists()


def test_cases_above_a_quarter_of_the_bound_stream_from_storage(uri: str, tmp_path: Path) -> None:
    cache = NodeCache(tmp_path / "cache", 4 * 1000)  # every case is larger than 1 kB
    store = PreparedStore(uri, node_cache=cache)
    image, _ = store.load_case("n3", verify=True)
    assert image.shape == (1, *SHAPES[3])
    assert cache.misses == 0 and cache.entries() == []


def test_an_unusable_cache_folder_falls_back_to_storage(uri: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    cache = NodeCache(tmp_path / "a-file" / "cache", 10**8)  # cannot be created
    store = PreparedStore(uri, node_cache=cache)
    with pytest.warns(UserWarning, match="node cache .* unusable"):
        image, _ = store.load_case("n0", verify=True)
    assert image.shape == (1, *SHAPES[0]) and store.node_cache is None
