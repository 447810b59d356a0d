"""The deployments' parameter schemas: what the Prefect UI form shows and submits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_core import to_jsonable_python

from flows.deployments import DEPLOYMENTS, _load
from flows.form_schema import form_schema
from tune import algorithms
from unet_core.engine import EPOCH_METRICS
from unet_core.losses import list_losses

Schema = dict[str, Any]


def _resolve(node: Schema, definitions: Schema) -> Schema:
    """`node` with a `$ref` replaced by its definition (the node's own keys win)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    return {**definitions[ref.rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}


def _object_branch(node: Schema, definitions: Schema) -> Schema:
    # `Model | None`: the branch the form shows once a value is set.
    for branch in node.get("anyOf", [node]):
        branch = _resolve(branch, definitions)
        if "properties" in branch:
            return branch
    return node


def schema_mismatches(node: Schema, value: Any, definitions: Schema, path: str) -> list[str]:
    """Every place under `node` whose schema default differs from the Python `value`.

    The form reads the nearest default: a field's own, else the one in its definition.
    """
    node = _resolve(node, definitions)
    found = []
    if "default" in node and node["default"] != value:
        found.append(f"{path}: form shows {node['default']!r}, Python default is {value!r}")
    if isinstance(value, dict):
        node = _object_branch(node, definitions)
        for key, prop in node.get("properties", {}).items():
            if key not in value:
                found.append(f"{path}.{key}: in the schema, not in the Python default")
            else:
                found += schema_mismatches(prop, value[key], definitions, f"{path}.{key}")
    return found


def _walk_fields(node: Schema, definitions: Schema, path: str, seen: set[str]):
    """(path, field schema) of every field reachable from `node`, each definition once."""
    for branch in node.get("anyOf", [node]):
        ref = branch.get("$ref")
        if ref is not None:
            if ref in seen:
                continue
            seen = seen | {ref}
        branch = _resolve(branch, definitions)
        for key, prop in branch.get("properties", {}).items():
            yield f"{path}.{key}", prop
            yield from _walk_fields(prop, definitions, f"{path}.{key}", seen)
        if "items" in branch and isinstance(branch["items"], dict):
            yield from _walk_fields(branch["items"], definitions, f"{path}[]", seen)


def _models(node: Schema, definitions: Schema):
    """Every object (model) schema reachable, resolved."""
    for path, prop in [("params", node), *_walk_fields(node, definitions, "params", set())]:
        for branch in [*prop.get("anyOf", [prop]), prop.get("items") or {}]:
            resolved = _resolve(branch, definitions)
            if "properties" in resolved:
                yield path, branch.get("$ref", ""), resolved


SPECS = {f"{spec.flow}/{spec.name}": spec for spec in DEPLOYMENTS}


@pytest.fixture(params=sorted(SPECS), scope="module")
def deployed(request) -> tuple[Schema, dict[str, Any]]:
    """(the schema a deployment carries, the flow's default parameter model)."""
    flow = _load(SPECS[request.param])
    # The flow's keyword arguments when a run changes nothing: its model's defaults.
    default = to_jsonable_python(flow.fn.params_model().parameters())
    return form_schema(flow.fn), default


def test_every_schema_default_is_the_python_default(deployed) -> None:
    schema, default = deployed
    found = schema_mismatches(schema, default, schema.get("definitions", {}), "params")
    assert not found, "\n".join(found)


def test_every_field_has_a_description(deployed) -> None:
    schema, _ = deployed
    fields = list(_walk_fields(schema, schema["definitions"], "params", set()))
    assert len(fields) >= 2
    missing = [path for path, prop in fields if not prop.get("description")]
    assert not missing, f"fields without a description: {missing}"


def test_sections_have_human_titles_and_plain_descriptions(deployed) -> None:
    schema, _ = deployed
    for path, ref, model in _models(schema, schema["definitions"]):
        class_name = ref.rsplit("/", 1)[-1]
        assert model.get("title") and model["title"] != class_name, (path, model.get("title"))
        text = model.get("description", "")
        # The form renders markdown: backticks, doctests and <tags> come out garbled.
        for bad in ("`", ">>>", "<", "Example:"):
            assert bad not in text, f"{path} ({model['title']}): {bad!r} in {text!r}"
    for path, prop in _walk_fields(schema, schema["definitions"], "params", set()):
        assert "<" not in prop.get("description", ""), (path, prop["description"])


def _field(schema: Schema, *path: str) -> Schema:
    node = schema
    for key in path:
        node = _object_branch(_resolve(node, schema["definitions"]), schema["definitions"])
        node = node["properties"][key]
    return node


@pytest.mark.parametrize(
    ("flow", "path", "choices"),
    [
        ("train", ("loss", "name"), list_losses()),
        ("train", ("train", "early_stopping", "monitor"), list(EPOCH_METRICS)),
        ("train", ("model", "norm"), ["batch", "instance", "group", "none"]),
        ("tune", ("search", "search_alg"), list(algorithms.SEARCH_ALGS)),
        ("tune", ("search", "scheduler"), list(algorithms.SCHEDULERS)),
        ("tune", ("search", "metric"), list(EPOCH_METRICS)),
        ("tune", ("optim", "name"), ["adam", "adamw", "sgd"]),
    ],
)
def test_fixed_choices_are_enums_from_the_registries(flow: str, path, choices) -> None:
    (spec,) = [s for s in DEPLOYMENTS if s.flow == flow]
    field = _field(form_schema(_load(spec).fn), *path)
    assert field.get("enum") == choices, (path, field)


def test_the_tune_form_can_be_submitted_as_it_opens() -> None:
    (spec,) = [s for s in DEPLOYMENTS if s.flow == "tune"]
    search = _field(form_schema(_load(spec).fn), "search")
    assert search["properties"]["space"]["default"] == "tune/spaces/hpo.yaml"
    assert search["properties"]["name"]["default"] == "weekly"
