"""The docs page: an AsyncAPI document rendered as one self-contained HTML page.

No script, no external resource (it works offline and under a strict
Content-Security-Policy): each channel with the messages clients send and
the ones the server sends, each message with its fields (type, whether
required, constraints, description), the type of its reply's ``data`` when
its handler declares one, and an example payload, then the nested types.
Every text from the document is escaped.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from .asyncapi import message_keys, operation_messages, reply_data

__all__ = ["CONTENT_SECURITY_POLICY", "docs_page"]

#: The page needs nothing but its own inline style (and the empty icon, so no request for /favicon.ico).
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

#: Constraint keywords shown, with how each reads.
CONSTRAINTS = {
    "minLength": "min length {}",
    "maxLength": "max length {}",
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "multipleOf": "multiple of {}",
    "pattern": "pattern {}",
    "minItems": "min items {}",
    "maxItems": "max items {}",
}

#: The two sections of a channel: (operation action, heading, CSS class).
DIRECTIONS = (("receive", "Client → server", "client"), ("send", "Server → client", "server"))

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 980px; padding: 1rem 1.5rem; color: #1b1f24; }
h1 { margin-bottom: 0; } .meta { color: #57606a; margin-top: .2rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
h3 { color: #57606a; font-size: 1rem; text-transform: uppercase; letter-spacing: .04em; margin-top: 1.5rem; }
.message { border: 1px solid #d0d7de; border-radius: 6px; padding: .2rem 1rem .8rem; margin: .8rem 0; }
.message h4 { margin: .6rem 0 .3rem; font-size: 1.05rem; } .title { color: #57606a; font-weight: normal; }
.client { border-left: 4px solid #0969da; } .server { border-left: 4px solid #1a7f37; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0; font-size: 14px; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #eaeef2; padding: .25rem .5rem .25rem 0; }
th { color: #57606a; font-weight: 600; }
code { font: 13px ui-monospace, monospace; background: #f6f8fa; padding: 0 .2em; }
pre { background: #f6f8fa; padding: .6rem; border-radius: 6px; overflow-x: auto; font-size: 13px; margin: .3rem 0; }
.optional { color: #57606a; } .required { font-weight: 600; } nav a { margin-right: 1rem; }
"""


def docs_page(document: dict[str, Any], asyncapi_url: str | None = None) -> str:
    """The HTML page of ``document``; ``asyncapi_url`` adds a link to the JSON document."""
    return _Page(document).render(asyncapi_url)


class _Page:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        components = document.get("components", {})
        self.schemas: dict[str, Any] = components.get("schemas", {})
        self.messages: dict[str, Any] = components.get("messages", {})
        self.schemes: dict[str, Any] = components.get("securitySchemes", {})
        self.nested: list[str] = []  # schemas referenced from fields, rendered in "Types"

    def render(self, asyncapi_url: str | None) -> str:
        info = self.document.get("info", {})
        title = f"{info.get('title', '')} {info.get('version', '')}".strip()
        channels = self.document.get("channels", {})
        parts = [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<link rel="icon" href="data:,"><title>{_e(title)}: messages</title><style>{STYLE}</style></head><body>',
            f"<header><h1>{_e(info.get('title', ''))}</h1>",
            f'<p class="meta">version {_e(info.get("version", ""))}',
            f' · AsyncAPI {_e(self.document.get("asyncapi", ""))}',
        ]
        if asyncapi_url is not None:
            parts.append(f' · <a href="{_e(asyncapi_url)}">the AsyncAPI document (JSON)</a>')
        parts.append("</p>")
        if info.get("description"):
            parts.append(f"<p>{_text(info['description'])}</p>")
        links = "".join(
            f'<a href="#channel-{_e(key)}"><code>{_e(channel["address"])}</code></a>' for key, channel in channels.items()
        )
        parts.append(f"<nav>Channels: {links}</nav></header><main>")
        for key, channel in channels.items():
            parts.append(self.channel(key, channel))
        parts.append(self.types())
        parts.append("</main></body></html>")
        return "".join(parts)

    def channel(self, key: str, channel: dict[str, Any]) -> str:
        everything = self.document.get("operations", {}).values()
        operations = [op for op in everything if op["channel"]["$ref"] == f"#/channels/{key}"]
        address = _e(channel["address"])
        parts = [f'<section class="channel" id="channel-{_e(key)}"><h2>Channel <code>{address}</code></h2>']
        if channel.get("description"):
            parts.append(f"<p>{_text(channel['description'])}</p>")
        security = [op.get("security") for op in operations if op.get("security")]
        if security:
            schemes = [self.schemes.get(ref["$ref"].rpartition("/")[2], {}) for ref in security[0]]
            ways = "; or ".join(_text(scheme.get("description", "")) for scheme in schemes)
            parts.append(f'<p class="auth"><strong>Authentication:</strong> {ways}</p>')
        for action, heading, css in DIRECTIONS:
            found = [(key, op) for op in operations if op["action"] == action for key in self.keys(op)]
            if found:
                parts.append(f"<h3>{heading}</h3>")
                parts.extend(self.message(key, name, css, self.reply(op)) for name, op in found)
        parts.append("</section>")
        return "".join(parts)

    def keys(self, operation: dict[str, Any]) -> list[str]:
        return operation_messages(self.document, operation)

    def reply(self, operation: dict[str, Any]) -> str:
        """A line on the reply to a request (a message with a ``"ref"``), when its ``data`` is typed."""
        for key in message_keys(self.document, operation.get("reply", {}).get("messages", [])):
            data = reply_data(self.messages[key].get("payload", {}))
            if data is not None:
                frame = '<code>{"type": "reply", "ref", "data"}</code>'
                answer = f'Sent with a <code>"ref"</code>, it is answered with {frame}; <code>data</code>:'
                return f'<p class="reply"><strong>Reply.</strong> {answer} {self.type_of(data)}</p>'
        return ""

    def message(self, channel: str, key: str, css: str, reply: str = "") -> str:
        message = self.messages[key]
        name = message.get("name", key)
        heading = "any other type" if name == "*" else f"<code>{_e(json.dumps(name))}</code>"
        parts = [f'<article class="message {css}" id="{_e(channel)}-{_e(key)}"><h4>{heading}']
        if message.get("title"):
            parts.append(f' <span class="title">{_e(message["title"])}</span>')
        parts.append("</h4>")
        if message.get("description"):
            parts.append(f"<p>{_text(message['description'])}</p>")
        payload = message.get("payload", {})
        if message.get("contentType", "application/json") != "application/json":
            parts.append(f"<p>Payload: {self.type_of(payload)} ({_e(message['contentType'])} frame)</p>")
        else:
            parts.append(self.fields(self.resolve(payload)))
        parts.append(reply)
        for example in message.get("examples", []):
            text = json.dumps(example.get("payload"), indent=2, ensure_ascii=False)
            parts.append(f"<p><strong>Example</strong></p><pre>{_e(text)}</pre>")
        parts.append("</article>")
        return "".join(parts)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A payload's object schema: ``$ref`` followed, ``allOf`` merged."""
        if "$ref" in schema:
            return self.resolve(self.schemas.get(schema["$ref"].rpartition("/")[2], {}))
        if "allOf" in schema:
            merged: dict[str, Any] = {"properties": {}, "required": []}
            for part in schema["allOf"]:
                resolved = self.resolve(part)
                for name, field in resolved.get("properties", {}).items():
                    merged["properties"][name] = {**merged["properties"].get(name, {}), **field}
                merged["required"] += [name for name in resolved.get("required", []) if name not in merged["required"]]
                if resolved.get("description") and "description" not in merged:
                    merged["description"] = resolved["description"]
            return merged
        return schema

    def fields(self, schema: dict[str, Any], what: str = "Payload") -> str:
        """The table of an object's fields; one line for any other type."""
        properties: dict[str, Any] = schema.get("properties", {})
        if not properties:
            return f"<p>{what}: {self.type_of(schema)}</p>"
        required = schema.get("required", [])
        rows = [
            "<table><thead><tr><th>Field</th><th>Type</th><th>Required</th><th>Constraints</th>"
            "<th>Description</th></tr></thead><tbody>"
        ]
        for name, field in properties.items():
            need = "required" if name in required else "optional"
            rows.append(
                f'<tr><td><code>{_e(name)}</code></td><td>{self.type_of(field)}</td><td class="{need}">{need}</td>'
                f"<td>{self.constraints(field)}</td><td>{_text(field.get('description', ''))}</td></tr>"
            )
        rows.append("</tbody></table>")
        return "".join(rows)

    def type_of(self, schema: dict[str, Any]) -> str:
        """How a field's type reads, with links to nested types."""
        if "$ref" in schema:
            name = schema["$ref"].rpartition("/")[2]
            if name not in self.nested:
                self.nested.append(name)
            return f'<a href="#type-{_e(name)}">{_e(name)}</a>'
        if "const" in schema:
            return f"<code>{_e(json.dumps(schema['const']))}</code>"
        if "enum" in schema:
            return " | ".join(f"<code>{_e(json.dumps(value))}</code>" for value in schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return " | ".join(self.type_of(option) for option in schema[key])
        if "allOf" in schema:
            return " & ".join(self.type_of(part) for part in schema["allOf"])
        kind = schema.get("type")
        if kind == "array":
            if "prefixItems" in schema:
                return "[" + ", ".join(self.type_of(item) for item in schema["prefixItems"]) + "]"
            items = schema.get("items")
            if not isinstance(items, dict):
                return "array"
            item = self.type_of(items)
            return f"array of ({item})" if " | " in item or " & " in item else f"array of {item}"
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict) and not schema.get("properties"):
            return f"object of {self.type_of(schema['additionalProperties'])}"
        if isinstance(kind, list):
            return " | ".join(_e(str(k)) for k in kind)
        if kind is None:
            return "any"
        text = _e(str(kind))
        return f"{text} ({_e(schema['format'])})" if "format" in schema else text

    def constraints(self, schema: dict[str, Any]) -> str:
        found = [
            text.format(json.dumps(schema[key]) if key == "pattern" else schema[key])
            for key, text in CONSTRAINTS.items()
            if key in schema
        ]
        if "default" in schema and "const" not in schema:
            found.append(f"default {json.dumps(schema['default'], ensure_ascii=False)}")
        return ", ".join(f"<code>{_e(item)}</code>" for item in found)

    def types(self) -> str:
        """The schemas fields refer to (and the ones those refer to), each as a table."""
        parts: list[str] = []
        index = 0
        while index < len(self.nested):  # rendering a type may add the types it refers to
            name = self.nested[index]
            index += 1
            schema = self.schemas.get(name, {})
            body = self.fields(self.resolve(schema), "Type")
            text = f"<p>{_text(schema['description'])}</p>" if schema.get("description") else ""
            parts.append(f'<article class="message" id="type-{_e(name)}"><h4>{_e(name)}</h4>{text}{body}</article>')
        return f"<section><h2>Types</h2>{''.join(parts)}</section>" if parts else ""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _text(text: str) -> str:
    """Escaped prose, with ````code```` and ```code``` spans shown as code."""
    return re.sub(r"``?([^`]+)``?", r"<code>\1</code>", _e(text))
