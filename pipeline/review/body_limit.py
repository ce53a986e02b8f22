"""Request bodies over a size are answered 413 before they are held in memory.

Every body the service takes is small (a login, a decision, a new account), but for the field
photos of a reported disposal, which have a limit of their own.
"""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.review.photos import MAX_PHOTO_BYTES, MAX_PHOTOS

MAX_BODY_BYTES = 1024 * 1024
UPLOAD_PATH = re.compile(r"^/api/cases/[^/]+/dispose$")  # POST /api/cases/{id}/dispose: photos, multipart
MAX_UPLOAD_BYTES = MAX_PHOTOS * MAX_PHOTO_BYTES + MAX_BODY_BYTES  # the photos and the form around them


class BodyLimit:
    """Plain ASGI rather than an ``@app.middleware``, so it sees the body chunk by chunk as it arrives:
    a declared Content-Length over the limit is refused unread, and a chunked body as soon as it
    passes it. The body is held here (at most ``max_bytes``) and handed on to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if UPLOAD_PATH.match(scope.get("path", "")) else self.max_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit)
            return
        received: list[Message] = []
        size = 0
        while not received or received[-1].get("more_body", False):
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._too_large(send, limit)
                return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": f"请求内容超过 {limit} 字节的上限，未被接收"}, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
