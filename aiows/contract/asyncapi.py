"""The AsyncAPI 3.0.0 document of an app, built from its routers and message models.

One channel per mounted path (see ``aiows.contract.collect``); every message
a client sends is a ``receive`` operation, every message the server sends (the
error frame, the declared ``emits``, ``auth_ok``) a ``send`` operation. Each
handler's ``receive`` operation has a ``reply``: the reply frame sent when the
message carries a ``"ref"``, its ``data`` typed by the handler's return
annotation when there is one (a reply message per request type). A model
published to rooms with history (``emits(..., room=True)``) is sent with the
fields of ``InRoom`` added. Payloads are pydantic's JSON Schemas (``$ref``s
into ``components/schemas``), each message with the handler's docstring as
description and an example payload that validates against its model. Built
on request, never on a message's path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import JsonSchemaMode

from ..codecs import Codec
from ..messages import message_type_of
from .collect import Channel, channels
from .examples import example_of
from .frames import Auth, AuthOk, ErrorFrame, InRoom, ReplyFrame

if TYPE_CHECKING:
    from ..server import WebSocketServer

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "message_keys", "operation_messages", "reply_data"]

#: The AsyncAPI version of the documents written.
ASYNCAPI_VERSION = "3.0.0"

#: Where ``$ref``s to schemas point.
SCHEMA_REF = "#/components/schemas/{model}"

Direction = Literal["client", "server"]

#: Added to the description of a model published to rooms with history.
PUBLISHED = 'Published to a room with history: aiows adds "room", "offset" and "epoch" (InRoom).'

#: Security schemes of channels behind ``AuthMiddleware``: a ``token`` query parameter or a bearer header.
SECURITY_SCHEMES = {
    "token": {
        "type": "httpApiKey",
        "name": "token",
        "in": "query",
        "description": "A token in the handshake URL: ?token=...",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token in the handshake's Authorization: Bearer header.",
    },
}


@dataclass
class _Message:
    """A message before its schema is known: who sends it, its name and what validates it.

    ``base`` is its key in a channel (``key`` may have a suffix, being unique
    among every channel's messages); ``data`` the type of a reply's ``data``;
    ``room``: published to rooms with history; ``reply``: what answers it.
    """

    key: str
    base: str
    direction: Direction
    name: str | None  #: its "type"; None for the catch-all
    annotation: Any
    description: str | None
    data: Any = None
    room: bool = False
    reply: _Message | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def asyncapi_document(server: WebSocketServer) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``server``'s routers, as a JSON-ready dict."""
    found = channels(server)
    codecs = server.options.offered_codecs
    subprotocol_header = {
        "type": "object",
        "properties": {
            "Sec-WebSocket-Protocol": {
                "type": "string",
                "description": "The codec: the client's first offer the server has; none offered: "
                + codecs[0].subprotocol,
                "enum": list(server.options.subprotocols),
            }
        },
    }
    builder = _Builder()
    document_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in found:
        channel_key = builder.unique(_key(channel.address.strip("/") or "root"))
        messages = builder.channel_messages(channel)
        local: dict[str, _Message] = {}  # the channel's own keys: no suffix where components needed one
        for message in messages:
            key, number = message.base, 1
            while key in local:
                number += 1
                key = f"{message.base}_{number}"
            local[key] = message
        local_keys = {id(message): key for key, message in local.items()}
        document_channels[channel_key] = {
            "address": channel.address,
            "title": channel.address,
            "messages": {key: {"$ref": f"#/components/messages/{message.key}"} for key, message in local.items()},
            "bindings": {"ws": {"headers": subprotocol_header, "bindingVersion": "0.1.0"}},
        }
        if channel.address == "/" and len(found) > 1:
            document_channels[channel_key]["description"] = "Every path: the routers mounted without a path."
        for key, message in local.items():
            if message.data is not None:
                continue  # a typed reply: sent as the reply of its request's operation, not an operation itself
            operation: dict[str, Any] = {
                "action": "receive" if message.direction == "client" else "send",
                "channel": {"$ref": f"#/channels/{channel_key}"},
                "messages": [{"$ref": f"#/channels/{channel_key}/messages/{key}"}],
            }
            if message.description:
                operation["summary"] = message.description.partition("\n")[0]
            if message.reply is not None:
                operation["reply"] = {
                    "channel": {"$ref": f"#/channels/{channel_key}"},
                    "messages": [{"$ref": f"#/channels/{channel_key}/messages/{local_keys[id(message.reply)]}"}],
                }
            if channel.auth is not None:
                operation["security"] = [{"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY_SCHEMES]
            operations[builder.unique(f"{channel_key}.{key}")] = operation
    components: dict[str, Any] = {"messages": builder.messages(), "schemas": builder.schemas}
    if any(channel.auth is not None for channel in found):
        components["securitySchemes"] = SECURITY_SCHEMES
    options = server.options
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": options.title,
            "version": options.version,
            "description": 'A WebSocket API: messages are objects routed by their "type" field, '
            + "; or ".join(_codec_description(codec) for codec in codecs)
            + ".",
        },
        "defaultContentType": codecs[0].content_type,
        "x-codecs": [
            {"name": codec.name, "subprotocol": codec.subprotocol, "contentType": codec.content_type}
            for codec in codecs
        ],
        "channels": document_channels,
        "operations": operations,
        "components": components,
    }


def _codec_description(codec: Codec) -> str:
    """``application/json in text frames (subprotocol aiows.json)``."""
    return f"{codec.content_type} in {'text' if codec.text else 'binary'} frames (subprotocol {codec.subprotocol})"


def operation_messages(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """The ``components/messages`` keys of an operation's messages (it refers to its channel's)."""
    return message_keys(document, operation["messages"])


def message_keys(document: dict[str, Any], refs: list[dict[str, str]]) -> list[str]:
    """The ``components/messages`` keys of references to channels' messages (an operation's, or its reply's)."""
    keys = []
    for ref in refs:
        _, _, channel, _, local = ref["$ref"].split("/")
        keys.append(document["channels"][channel]["messages"][local]["$ref"].rpartition("/")[2])
    return keys


def reply_data(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a typed reply's ``data``, from its message's payload (``None``: the untyped reply frame)."""
    for part in payload.get("allOf", []):
        if "data" in part.get("properties", {}):
            data: dict[str, Any] = part["properties"]["data"]
            return data
    return None


class _Builder:
    """Collects the messages of every channel, then writes their schemas in one pass."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.by_identity: dict[tuple[Any, ...], _Message] = {}
        self.raw: dict[str, dict[str, Any]] = {}
        self.schemas: dict[str, Any] = {}

    def unique(self, key: str) -> str:
        """``key``, or ``key_2``, ``key_3``... if taken."""
        candidate, number = key, 1
        while candidate in self.keys:
            number += 1
            candidate = f"{key}_{number}"
        self.keys.add(candidate)
        return candidate

    def message(
        self,
        direction: Direction,
        name: str | None,
        annotation: Any,
        description: str | None,
        *,
        base: str | None = None,
        data: Any = None,
        room: bool = False,
        reply: _Message | None = None,
    ) -> _Message:
        identity = (direction, name, annotation, data, room, reply and reply.key)
        message = self.by_identity.get(identity)
        if message is None:
            if base is None:
                base = _key(f"{direction}.{name if name is not None else 'any_type'}" + (".room" if room else ""))
            key = self.unique(base)
            message = _Message(key, base, direction, name, annotation, description, data, room, reply)
            self.by_identity[identity] = message
        return message

    def channel_messages(self, channel: Channel) -> list[_Message]:
        if channel.raw is not None:
            return self.raw_messages(channel.raw)
        reply = self.message("server", "reply", ReplyFrame, "The answer to a message that carried a ref.")
        messages: list[_Message] = []
        replies = [reply]
        for incoming in channel.incoming:
            answer = reply
            if incoming.reply is not None:
                answer = self.typed_reply(incoming.type, incoming.reply)
                if answer not in replies:
                    replies.append(answer)
            messages.append(self.message("client", incoming.type, incoming.model, incoming.description, reply=answer))
        if channel.auth is not None and channel.auth.first_message:
            first = "Authenticate: the first message, within the auth timeout."
            messages.append(self.message("client", "auth", Auth, first))
            messages.append(self.message("server", "auth_ok", AuthOk, AuthOk.__doc__))
        for item in channel.outgoing:
            if isinstance(item, type) and issubclass(item, BaseModel):
                messages.append(self.message("server", message_type_of(item), item, item.__doc__))
        for item in channel.published:
            description = "\n\n".join(filter(None, [item.__doc__, PUBLISHED]))
            messages.append(self.message("server", message_type_of(item), item, description, room=True))
        messages.append(self.message("client", "reply", ReplyFrame, "The answer to the server's request (its ref)."))
        error = self.message("server", "error", (ErrorFrame, tuple(channel.error_codes)), ErrorFrame.__doc__)
        return [*messages, *replies, error]

    def typed_reply(self, request: str | None, data: Any) -> _Message:
        """The reply frame to a ``request`` message, its ``data`` of type ``data``."""
        what = "any other type" if request is None else f'"{request}"'
        description = f"The reply to a {what} message that carried a ref: data is what its handler returned."
        base = _key(f"server.reply.{request if request is not None else 'any_type'}")
        return self.message("server", "reply", ReplyFrame, description, base=base, data=data)

    def raw_messages(self, description: str) -> list[_Message]:
        messages = []
        for name, content_type, schema in (
            ("text", "text/plain", {"type": "string"}),
            ("binary", "application/octet-stream", {"type": "string", "format": "binary"}),
        ):
            message = self.message("client", name, None, description or f"Any {name} frame, unparsed.")
            self.raw[message.key] = {"contentType": content_type, "payload": schema}
            messages.append(message)
        return messages

    def messages(self) -> dict[str, Any]:
        """Every message, with its schema (``self.schemas`` gets the models)."""
        typed = [message for message in self.by_identity.values() if message.key not in self.raw]
        adapters = {message.key: TypeAdapter(_model(message.annotation)) for message in typed}
        data = {message.key: TypeAdapter(message.data) for message in typed if message.data is not None}
        inputs: list[tuple[Any, JsonSchemaMode, TypeAdapter[Any]]]
        inputs = [(message.key, _mode(message), adapters[message.key]) for message in typed]
        inputs += [((key, "data"), "serialization", adapter) for key, adapter in data.items()]
        if any(message.room for message in typed):
            inputs.append((InRoom, "serialization", TypeAdapter(InRoom)))
        payloads, definitions = TypeAdapter.json_schemas(inputs, ref_template=SCHEMA_REF)
        self.schemas.update(definitions.get("$defs", {}))
        result: dict[str, Any] = {}
        for message in self.by_identity.values():
            entry: dict[str, Any] = {"name": message.name if message.name is not None else "*"}
            if message.key in self.raw:
                entry.update(self.raw[message.key])
            else:
                entry["title"] = _title(message.annotation)
                payload = self.payload(message, payloads[(message.key, _mode(message))])
                if message.data is not None:  # a typed reply: the frame, its data required and of that type
                    entry["title"] += f"[{_title(message.data)}]"
                    typed_data = {"properties": {"data": payloads[((message.key, "data"), "serialization")]}}
                    payload = {"allOf": [payload, {**typed_data, "required": ["data"]}]}
                elif message.room:
                    payload = self.in_room(payload, payloads[(InRoom, "serialization")])
                entry["payload"] = payload
                example = self.example(payload, adapters[message.key], data.get(message.key), message.room)
                if example is not None:
                    entry["examples"] = [{"name": message.name or "message", "payload": example}]
            if message.description:
                entry["description"] = message.description
            result[message.key] = entry
        return result

    def payload(self, message: _Message, schema: dict[str, Any]) -> dict[str, Any]:
        """The wire payload: the model's schema, its ``"type"`` required (routing needs it)."""
        if isinstance(message.annotation, tuple):  # the error frame, with this channel's codes
            self.require_type(schema, "error")
            codes = {"type": "string", "enum": list(message.annotation[1])}
            return {"allOf": [schema, {"properties": {"code": codes}, "required": ["code"]}]}
        if message.name is None:
            return schema
        if self.require_type(schema, message.name):
            return schema
        return {"allOf": [schema, {"properties": {"type": {"const": message.name}}, "required": ["type"]}]}

    def in_room(self, payload: dict[str, Any], in_room: dict[str, Any]) -> dict[str, Any]:
        """A model's payload with ``InRoom``'s fields added: both schemas, or one when the model forbids extra fields."""
        target = self.schemas.get(payload.get("$ref", "").rpartition("/")[2], {})
        if target.get("additionalProperties") is not False:
            return {"allOf": [payload, in_room]}
        fields = self.schemas[in_room["$ref"].rpartition("/")[2]]  # "allOf" would refuse them: merged instead
        properties = {**target["properties"], **fields["properties"]}
        return {**target, "properties": properties, "required": [*target.get("required", []), *fields["required"]]}

    def require_type(self, schema: dict[str, Any], name: str) -> bool:
        """Make the ``type`` of the model ``schema`` points to required, if it is the constant ``name``."""
        target = self.schemas.get(schema.get("$ref", "").rpartition("/")[2])
        if target is None or target.get("properties", {}).get("type", {}).get("const") != name:
            return False
        if "type" not in target.setdefault("required", []):
            target["required"].insert(0, "type")
        return True

    def example(
        self, payload: dict[str, Any], adapter: TypeAdapter[Any], data: TypeAdapter[Any] | None, room: bool
    ) -> Any:
        """An example of ``payload`` that the model (a typed reply's ``data`` type, ``InRoom``) accepts, or ``None``."""
        example = example_of(payload, self.schemas)
        model = example
        try:
            if room:  # the fields aiows adds, then the model's
                InRoom.model_validate({key: example[key] for key in InRoom.model_fields})
                model = {key: value for key, value in example.items() if key not in InRoom.model_fields}
            adapter.validate_json(orjson.dumps(model))
            if data is not None:
                data.validate_json(orjson.dumps(example["data"]))
        except (ValidationError, TypeError, KeyError):
            return None
        return example


def _mode(message: _Message) -> JsonSchemaMode:
    """What clients send is validated; what the server sends is serialized."""
    return "validation" if message.direction == "client" else "serialization"


def _model(annotation: Any) -> Any:
    return annotation[0] if isinstance(annotation, tuple) else annotation


def _title(annotation: Any) -> str:
    """A model's name; a generic type's as written (``list[User]``, ``User | None``)."""
    model = _model(annotation)
    if model is None or model is type(None):
        return "None"
    origin, arguments = get_origin(model), get_args(model)
    if origin is None or not arguments:
        return getattr(model, "__name__", None) or repr(model)
    if origin in (Union, UnionType):
        return " | ".join(_title(argument) for argument in arguments)
    return f"{_title(origin)}[{', '.join(_title(argument) for argument in arguments)}]"


def _key(text: str) -> str:
    """A component key AsyncAPI accepts (``[A-Za-z0-9._-]``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"
