"""aiows alone as the ASGI app (lifespan reaches it); its own HTTP route stands in for the host's."""

from __future__ import annotations

from chat import server

from aiows.http import HTTPRequest, HTTPResponse, json_response


def index(request: HTTPRequest) -> HTTPResponse:
    return json_response({"hello": "aiows"})


server.add_http_route("/", index)
app = server.asgi()
