"""Every exception type of the project survives pickling, as Ray needs to carry it from
a worker to the driver (and Prefect to persist a failed task's result).

The classes are found by walking the project's sources, so a new exception type is
covered without editing this test.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
from pathlib import Path

import pytest

from tests.test_layering import LAYERS, ROOT, _module_name


def _modules_defining_classes() -> list[str]:
    names = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if path.name == "__main__.py":  # runs the CLI when imported
                continue
            tree = ast.parse(path.read_text(), str(path))
            if any(isinstance(node, ast.ClassDef) for node in ast.walk(tree)):
                names.append(_module_name(path))
    return names


def project_exceptions() -> list[type[BaseException]]:
    found = {}
    for name in _modules_defining_classes():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__.split(".")[0] in LAYERS
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance built from distinct strings for each required argument."""
    try:
        signature = inspect.signature(cls)
    except ValueError:  # a builtin __init__: the exception takes a message
        return cls("message-value")
    params = [
        p
        for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    args = [f"{p.name}-value" for p in params] or ["message-value"]
    return cls(*args)


EXCEPTIONS = project_exceptions()


def test_the_walk_finds_the_known_exception_types() -> None:
    names = {cls.__name__ for cls in EXCEPTIONS}
    assert {"DataError", "ConfigError", "UsageError", "DvcError"} <= names


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_exception_survives_pickle(cls: type[BaseException]) -> None:
    err = _instance(cls)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err)
    assert vars(back) == vars(err)  # extra fields (DataError.where, .problem) come back too


def test_data_error_round_trip_keeps_fields() -> None:
    from unet_core.data import DataError

    err = pickle.loads(pickle.dumps(DataError(Path("masks/a.png"), "mask values\n are odd")))
    assert (err.where, err.problem, str(err)) == ("masks/a.png", "mask values are odd", str(err))
    assert str(err) == "masks/a.png: mask values are odd"
