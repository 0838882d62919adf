"""What keeps a local server local: loopback by default, an API key otherwise, bounded request bodies."""

import hmac
import ipaddress
import json
import os
import re

from ..errors import L2VError

PUBLIC_PATHS = frozenset({"/health"})
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; any other name or address may be reachable from outside."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_api_key(value: str | None) -> str | None:
    """`--api-key` is the name of an environment variable holding the key, or else the key itself.

    An unset UPPER_CASE name is an error rather than a key, so a typo in the variable's name cannot become
    a guessable key.
    """
    if value is None:
        return None
    if value in os.environ:
        value = os.environ[value]
    elif ENV_NAME.fullmatch(value):
        raise L2VError(f"--api-key {value}: no environment variable of that name is set")
    if not value.strip():
        raise L2VError("the API key is empty")
    return value


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve an index beyond this machine without a key."""
    if api_key is None and not is_loopback(host):
        raise L2VError(
            f"--host {host} is reachable from other machines; give --api-key KEY (or an env var name)"
        )


def _error_body(status: int, message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()


async def _send_error(send, status: int, message: str, kind: str, headers: list | None = None) -> None:
    body = _error_body(status, message, kind)
    base = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": base + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str:
    """The name in a Host header, without the port: "[::1]:8765" → "::1", "localhost:80" → "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class LoopbackHostMiddleware:
    """ASGI middleware for a loopback-bound server: refuse requests whose Host header names another machine.

    A web page the user visits cannot read the answers of a loopback server, unless its own domain is made to
    resolve to 127.0.0.1 ("DNS rebinding"); such requests still carry that domain in their Host header.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not is_loopback(host_name(given)):
                await _send_error(send, 400, f"Host {given!r} is not this machine", "invalid_request_error")
                return
        await self.app(scope, receive, send)


class ApiKeyMiddleware:
    """ASGI middleware: all paths but /health need `Authorization: Bearer <key>` (constant-time compare)."""

    def __init__(self, app, api_key: str) -> None:
        self.app = app
        self.expected = api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").strip().partition(b" ")
            # The scheme is case-insensitive (RFC 9110: "bearer" is "Bearer"); the key is not.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.expected):
                await _send_error(
                    send,
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """ASGI middleware: read at most `max_bytes` of a request body, answer 413 beyond, else replay it."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(send)
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        await _send_error(
            send, 413, f"request body is larger than {self.max_bytes} bytes", "invalid_request_error"
        )
