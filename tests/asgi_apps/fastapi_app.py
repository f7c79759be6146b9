"""FastAPI with an HTTP route and aiows mounted at ``/ws`` (started lazily: FastAPI does not forward lifespan)."""

from __future__ import annotations

from chat import chat_app
from fastapi import FastAPI

app = FastAPI(lifespan=chat_app.lifespan)


@app.get("/")
async def index() -> dict[str, str]:
    return {"hello": "fastapi"}


app.mount("/ws", chat_app)
