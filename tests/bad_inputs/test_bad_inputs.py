"""Every case of the corpus (`cases.py`) is refused the same way: exit code 2, exactly
one line on stderr that names the file, field or value, no traceback, and nothing
written: no MLflow store or run, no prepared folder, no DVC or Ray state.

Most cases run in-process (`main(argv)`), where `ray.init` is replaced by a trap that
fails the test if anything starts Ray; the `subprocess` subset runs the installed
console script end to end, with Ray's temp folder pointed at an empty directory that
must stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.bad_inputs.cases import CASES, Case

BIN = Path(sys.executable).parent


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _setup(case: Case, root: Path) -> tuple[list[str], set[str]]:
    (root / "project").mkdir()
    case.build(root)
    argv = [a.format(root=root, project=root / "project") for a in case.argv]
    return argv, _files(root)


def _check_refusal(case: Case, root: Path, before: set[str], code: int, stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    for word in case.words:
        assert word in lines[0], f"{word!r} missing from: {lines[0]}"
    # Nothing half-written: no MLflow store, prepared folder, DVC or Ray state, mask.
    assert _files(root) == before


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def trap(*args, **kwargs):
        raise AssertionError("ray.init was called: the input was not refused before Ray")

    monkeypatch.setattr(ray, "init", trap)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_refused_in_process(case: Case, tmp_path: Path, capsys, no_ray, monkeypatch) -> None:
    from unetflow_cli.main import main

    argv, before = _setup(case, tmp_path)
    capsys.readouterr()  # what building the input printed is not the CLI's
    monkeypatch.chdir(tmp_path)  # anything written to the working folder is caught too
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with warnings.catch_warnings(record=True) as caught:  # a real run prints them on stderr
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse exits itself
            code = exit_.code
    _check_refusal(case, tmp_path, before, code, capsys.readouterr().err)
    assert not [str(w.message) for w in caught]


SUBPROCESS_CASES = [c for c in CASES if c.subprocess]


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.name)
def test_refused_by_the_console_script(case: Case, tmp_path: Path) -> None:
    root = tmp_path / "case"
    root.mkdir()
    argv, before = _setup(case, root)
    ray_tmp = tmp_path / "ray-tmp"
    ray_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env |= {"RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run(
        [str(BIN / "unetflow"), *argv],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check_refusal(case, root, before, proc.returncode, proc.stderr)
    assert not any(ray_tmp.iterdir()), "Ray started a session"


def test_the_corpus_is_large_and_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 40
    assert len(SUBPROCESS_CASES) >= 5
