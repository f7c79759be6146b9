"""Example payloads made from JSON Schemas: what the docs page and the AsyncAPI document show.

Each value is the schema's own ``examples``, ``const``, ``default`` or first
``enum`` value when it has one, else the simplest value of its type that
meets its length and range constraints. Callers check the result against
the model (a pattern, for one, is not followed here) and leave it out when
it does not validate.
"""

from __future__ import annotations

from typing import Any

__all__ = ["example_of"]

#: How deep nested models are followed (a recursive model stops there).
MAX_DEPTH = 8

#: Example strings for the formats pydantic writes.
FORMATS = {
    "date-time": "2026-01-01T12:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00",
    "duration": "PT1M",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def example_of(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """An example value of ``schema``; ``$ref``s point into ``schemas`` (``components/schemas``)."""
    if depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return example_of(schemas[schema["$ref"].rpartition("/")[2]], schemas, depth + 1)
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example_of(part, schemas, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"] or schema[key]
            return example_of(options[0], schemas, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties: dict[str, Any] = schema.get("properties", {})
        return {name: example_of(field, schemas, depth + 1) for name, field in properties.items()}
    if kind == "array":
        if "prefixItems" in schema:
            return [example_of(item, schemas, depth + 1) for item in schema["prefixItems"]]
        items = schema.get("items")
        if not isinstance(items, dict):
            return []
        return [example_of(items, schemas, depth + 1)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return False
    return None


def _string(schema: dict[str, Any]) -> str:
    text = FORMATS.get(schema.get("format", ""), "text")
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    if high is not None and len(text) > high:
        text = text[:high]
    return text


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    value: float = 1
    if "minimum" in schema:
        value = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"] + 1
    elif "maximum" in schema:
        value = min(value, schema["maximum"])
    elif "exclusiveMaximum" in schema:
        value = min(value, schema["exclusiveMaximum"] - 1)
    return int(value) if integer else float(value)
