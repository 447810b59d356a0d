"""DVC with an S3 remote (a real moto server over HTTP) and exact data versions."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3 import OutageProxy, S3Endpoint, s3_server_in_env
from unetflow import dvc_data
from unetflow.errors import UsageError
from unetflow_cli.main import main as cli_main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def endpoint() -> Iterator[S3Endpoint]:
    # Credentials only in the environment, as for users; never in .dvc/config*.
    with s3_server_in_env("dvc") as server:
        yield server


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _end_outage(proxy: OutageProxy, after_s: float) -> None:
    proxy.wait_refused(1)
    time.sleep(after_s)
    proxy.up()


def test_push_survives_an_outage_then_pull_restores_byte_identical_data(
    project_dir: Path, endpoint: S3Endpoint, capsys
) -> None:
    """Prepare, push through an outage, delete cache and data, pull; then one exact version."""
    with OutageProxy(endpoint.port) as proxy:
        assert (
            cli_main(
                [
                    "data",
                    "remote",
                    "s3://dvc/store",
                    "--endpoint",
                    proxy.url,
                    "--project-dir",
                    str(project_dir),
                ]
            )
            == 0
        )
        assert cli_main(["data", "prepare", "--project-dir", str(project_dir)]) == 0
        before = _digest(project_dir / "data")
        version = dvc_data.data_version(project_dir)

        proxy.down()  # the endpoint refuses connections until 3 s after push hits it
        threading.Thread(target=_end_outage, args=(proxy, 3.0), daemon=True).start()
        assert cli_main(["data", "push", "--project-dir", str(project_dir)]) == 0
        assert proxy.refused > 0 and proxy.accepted > 0
        capsys.readouterr()
        assert cli_main(["data", "status", "--project-dir", str(project_dir)]) == 0
        out = capsys.readouterr().out
        assert version in out and "in sync" in out

        shutil.rmtree(project_dir / ".dvc" / "cache")
        shutil.rmtree(project_dir / "data")
        assert cli_main(["data", "pull", "--project-dir", str(project_dir)]) == 0
        assert _digest(project_dir / "data") == before  # byte-identical

        # An exact version, by its md5, from the remote alone (cache deleted again).
        shutil.rmtree(project_dir / ".dvc" / "cache")
        path = dvc_data.ensure_version(project_dir, version)
        assert path == project_dir / ".unetflow" / "data" / version.removesuffix(".dir")
        assert _digest(path) == _digest(project_dir / "data" / "prepared")
        assert dvc_data.ensure_version(project_dir, version.removesuffix(".dir")) == path  # cached
        assert not list(project_dir.glob(".unetflow-version-*"))  # the temporary .dvc file is gone
        assert not list(path.parent.glob(".partial-*"))
        with pytest.raises(dvc_data.UnknownVersionError, match="neither the DVC cache nor"):
            dvc_data.ensure_version(project_dir, "0" * 32)
        assert not list(path.parent.glob(".partial-*")) and not list(
            project_dir.glob(".unetflow-version-*")
        )
        with pytest.raises(UsageError, match="not a DVC md5"):
            dvc_data.ensure_version(project_dir, "latest")
    # Nothing secret in tracked config: the key lives only in the environment.
    for config in (project_dir / ".dvc").glob("config*"):
        assert endpoint.secret_key not in config.read_text()
    objects = endpoint.client().list_objects_v2(Bucket="dvc", Prefix="store/")["Contents"]
    assert all(obj["Size"] > 0 for obj in objects)  # whole objects only
