"""`BodyLimitMiddleware`: no request body larger than `Settings.max_body_bytes` reaches a route.

A declared Content-Length above the limit is answered 413 before a byte of the body is read;
a body without one (chunked) is read up to the limit, then refused the same way, so a client
can never make the API buffer more than the limit. Pure ASGI, in front of FastAPI's own body
parsing. Why not FastAPI's `max_body_size` (0.165+): for a declared oversize body Starlette's
limiter replaces whatever the app answers with a `text/plain` 413, and every error of this API
is `application/problem+json` (docs/api.md).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(path: str, limit: int) -> tuple[Message, Message]:
    body = json.dumps({
        "type": "urn:wattrail:problem:body-too-large", "title": "Content Too Large",
        "status": 413, "instance": path,
        "detail": f"the request body is larger than {limit} bytes (WATTRAIL_API_MAX_BODY_BYTES); "
                  "split it, or raise the limit"}).encode()
    start: Message = {"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app, self.limit = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            for message in _too_large(scope.get("path", ""), self.limit):
                await send(message)
            return
        # read the body here, counting: the route then gets it in one piece
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                for reply in _too_large(scope.get("path", ""), self.limit):
                    await send(reply)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks),
                                         "more_body": False}], receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()  # after the body: http.disconnect when the client leaves
        return {"type": "http.disconnect"}
    return receive
