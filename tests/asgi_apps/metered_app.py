"""aiows alone as the ASGI app, with live stats on its health endpoint and Prometheus metrics at ``/metrics``."""

from __future__ import annotations

from aiows import ChatMessage, Router, WebSocket, WebSocketServer

router = Router()


@router.message("chat")
async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
    await websocket.send_json({"type": "chat", "text": message.text})


server = WebSocketServer(metrics_path="/metrics", health_detail=True)
server.include_router(router, path="/chat")
app = server.asgi()
