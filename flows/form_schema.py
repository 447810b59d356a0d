"""The parameter schema a deployment carries, with every default where the form reads it.

Prefect's UI form fills a nested field from the default in its type's definition (the
class default), not from the default the enclosing field gives it: `ExperimentConfig.model`
defaults to depth 3, yet the form showed, and submitted, `ModelConfig`'s depth 4. Here
every field whose default is an object gets its definition inlined, with that object's
values as the defaults of its fields, recursively; definitions nothing refers to any more
are dropped. The form then shows the Python defaults exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.utilities.callables import parameter_schema

Schema = dict[str, Any]


def form_schema(fn: Callable[..., Any]) -> Schema:
    """The OpenAPI parameter schema of flow function `fn`, defaults inlined per field."""
    schema = parameter_schema(fn).model_dump_for_openapi()
    definitions = schema.get("definitions", {})
    schema["properties"] = {
        key: _inline(prop, definitions) for key, prop in schema["properties"].items()
    }
    inlined = {name: _inline_fields(d, definitions) for name, d in definitions.items()}
    schema["definitions"] = _referenced(schema["properties"], inlined)
    return schema


def _inline(node: Schema, definitions: Schema) -> Schema:
    """`node`, its definition inlined when it refers to one and has an object default."""
    default, ref = node.get("default"), node.get("$ref")
    if ref is None or not isinstance(default, dict):
        return node
    target = definitions[ref.rsplit("/", 1)[-1]]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    merged["properties"] = {
        key: _inline({**prop, "default": default[key]} if key in default else prop, definitions)
        for key, prop in target.get("properties", {}).items()
    }
    return merged


def _inline_fields(definition: Schema, definitions: Schema) -> Schema:
    # A definition still used (an optional model, e.g. PipelineParams.tune) gets its own
    # object-valued fields inlined too.
    if "properties" not in definition:
        return definition
    fields = {key: _inline(prop, definitions) for key, prop in definition["properties"].items()}
    return {**definition, "properties": fields}


def _referenced(properties: Schema, definitions: Schema) -> Schema:
    """The definitions `properties` refer to, directly or through other definitions."""
    keep: set[str] = set()
    pending = _refs(properties)
    while pending:
        name = pending.pop()
        if name not in keep:
            keep.add(name)
            pending |= _refs(definitions[name])
    return {name: d for name, d in definitions.items() if name in keep}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()
