"""The API contract on disk: schemas/openapi.yaml plus the JSON Schemas in schemas/json.

The YAML refers to the JSON Schema files by relative path; `bundle()` inlines each file once into
components/schemas and points every reference there, which gives the single OpenAPI 3.1 document
served at /v1/openapi.json. The same files validate request bodies in the server and responses in
the tests (`validator()`), so the contract has exactly one source.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tracer.resources import schemas_root


def schemas_dir() -> Path:
    """`schemas/`: inside the installed package for a wheel, the source tree's in a checkout
    (override with $TRACER_SCHEMAS_DIR)."""
    return schemas_root()


def _component_name(path: Path) -> str:
    stem = path.name.removesuffix(".schema.json").removesuffix(".json")
    return "".join(part.capitalize() for part in stem.replace("_", "-").split("-"))


def bundle(root: Path | None = None) -> dict[str, Any]:
    """openapi.yaml with every external $ref inlined under components/schemas."""
    base = root or schemas_dir()
    doc: dict[str, Any] = yaml.safe_load((base / "openapi.yaml").read_text(encoding="utf-8"))
    components: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    names: dict[Path, str] = {}

    def load(path: Path) -> str:
        if path in names:
            return names[path]
        name = _component_name(path)
        if name in components:
            raise ValueError(f"two schemas named {name}: {path}")
        names[path] = name
        schema = json.loads(path.read_text(encoding="utf-8"))
        # An $id inside a component would re-base the "#/components/..." refs written below.
        schema.pop("$id", None)
        schema.pop("$schema", None)
        components[name] = rewrite(schema, path.parent)
        return name

    def rewrite(node: Any, folder: Path) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v, folder) for k, v in node.items()}
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                out["$ref"] = f"#/components/schemas/{load((folder / ref).resolve())}"
            return out
        if isinstance(node, list):
            return [rewrite(v, folder) for v in node]
        return node

    bundled: dict[str, Any] = rewrite(doc, base.resolve())
    bundled["components"]["schemas"] = components
    return bundled


@functools.cache
def document() -> dict[str, Any]:
    return bundle()


@functools.cache
def document_bytes() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()


@functools.cache
def _registry() -> Registry:
    resources = []
    for path in sorted((schemas_dir() / "json").glob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry = Registry().with_resources(resources)
    return registry


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A validator for schemas/json/<name>.schema.json, resolving its references to the others."""
    path = schemas_dir() / "json" / f"{name}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def field_of(error: Any) -> str:
    """A jsonschema error's location as the API's `field`: policy.max_depth, seeds[3]."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            out = f"{out}.{missing[0]}" if out else missing[0]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            out = f"{out}.{extra[0]}" if out else extra[0]
    return out or "body"
