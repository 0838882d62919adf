"""The HTTP API a RAG program talks to: /search, OpenAI-compatible /v1/embeddings, /health, /indexes, /reload.

Every user-caused problem becomes a 4xx answer with `{"error": {"message", "type", "code"}}` (the OpenAI error
shape, so OpenAI clients show the message); nothing a request contains can crash the server.
"""

import base64
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import L2VError
from .backend import Backend, UnknownIndex, UnknownModel
from .schema import options_from, search_request_model
from .security import ApiKeyMiddleware, BodyLimitMiddleware, LoopbackHostMiddleware

log = logging.getLogger(__name__)


@dataclass
class Limits:
    """Caps on what one request may ask for, so that one client cannot tie up the server."""

    max_body_bytes: int = 1_048_576
    max_inputs: int = 256
    max_text_chars: int = 32_000
    max_k: int = 100


class EmbeddingsRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def error_response(
    status: int, message: str, kind: str = "invalid_request_error", code: str | int | None = None
) -> JSONResponse:
    """OpenAI's error shape; `code` is the HTTP status unless OpenAI names the error (`model_not_found`)."""
    body = {"error": {"message": message, "type": kind, "code": status if code is None else code}}
    return JSONResponse(body, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    """The first problem, said plainly: where in the body, and what is wrong there."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    if not where:
        return "the request body must be a JSON object"
    if where.split(".")[0] == "input":
        return "input must be a string or a list of strings (token arrays are not supported)"
    return f"{where}: {first.get('msg', 'invalid value')}"


def create_app(
    backend: Backend, *, api_key: str | None = None, limits: Limits | None = None, loopback_only: bool = True
) -> FastAPI:
    """The FastAPI app over an already loaded `Backend`; the app closes the backend when it shuts down.

    `loopback_only` (for a server bound to 127.0.0.1/::1) refuses requests addressed to other host names.
    """
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        backend.close()

    app = FastAPI(
        title="l2v-search",
        version=__version__,
        lifespan=lifespan,
        description="Local retrieval backend for RAG programs.",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    if loopback_only:
        app.add_middleware(LoopbackHostMiddleware)
    _add_error_handlers(app)

    def check_texts(texts: list[str]) -> None:
        if not texts:
            raise L2VError("input is empty: give a string or a non-empty list of strings")
        if len(texts) > limits.max_inputs:
            raise L2VError(f"{len(texts)} inputs in one request; the limit is {limits.max_inputs}")
        for i, text in enumerate(texts):
            if not _is_unicode(text):
                raise L2VError(f"input {i} is not valid Unicode (it holds a lone UTF-16 surrogate)")
            if not text.strip():
                raise L2VError(f"input {i} is empty or only whitespace; there is nothing to search or embed")
            if len(text) > limits.max_text_chars:
                raise L2VError(f"input {i} has {len(text)} characters; the limit is {limits.max_text_chars}")

    @app.get("/health")
    async def health() -> dict:
        """Liveness plus each model's micro-batching counters (no index or model names, which may tell
        paths on this machine: this path needs no API key)."""
        return {
            "status": "ok",
            "version": __version__,
            "models": [model.describe(public=True) for model in list(backend.models.values())],
        }

    @app.get("/indexes")
    async def indexes() -> dict:
        served = [await run_in_threadpool(backend.index, name) for name in list(backend.indexes)]
        return {"indexes": [await run_in_threadpool(index.describe) for index in served]}

    @app.post("/reload")
    async def reload() -> dict:
        """Re-read every index that changed on disk (each request also does this for the index it uses)."""
        return await indexes()

    search_request = search_request_model(limits.max_k, limits.max_text_chars)

    @app.post("/search")
    async def search(request: search_request) -> JSONResponse:  # type: ignore[valid-type]
        started = time.perf_counter()
        check_texts([request.query])
        options = options_from(vars(request))
        served, hits = await backend.search(request.query, options, request.index)
        return JSONResponse(
            {
                "hits": [hit.to_dict() for hit in hits],
                "index": served.name,
                "mode": options.mode,
                "took_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingsRequest) -> JSONResponse:
        """OpenAI-compatible: `model` may name a served index to use its model; it is echoed back."""
        texts = [request.input] if isinstance(request.input, str) else request.input
        check_texts(texts)
        model = await run_in_threadpool(backend.model, request.model)
        dim = model.encoder.dim
        if request.dimensions is not None and request.dimensions != dim:
            raise L2VError(
                f"this model returns {dim} dimensions; dimensions={request.dimensions} is not supported"
            )
        embedded = await model.embed(texts)
        tokens = int(embedded.tokens.sum())
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": _encode_vector(v, request.encoding_format),
                    }
                    for i, v in enumerate(embedded.vectors)
                ],
                "model": request.model or model.encoder.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.get("/v1/models")
    async def models() -> dict:
        """OpenAI-style model list: the served index names, each usable as `model` in /v1/embeddings."""
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "owned_by": "l2v-search"} for name in backend.indexes],
        }

    return app


def _is_unicode(text: str) -> bool:
    """False for text JSON can carry but no encoder can read: a lone surrogate such as "\\ud800"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """OpenAI's base64 format is the little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownIndex)
    async def unknown_index(_request: Request, exc: UnknownIndex) -> JSONResponse:
        return error_response(404, str(exc), "not_found_error")

    @app.exception_handler(UnknownModel)
    async def unknown_model(_request: Request, exc: UnknownModel) -> JSONResponse:
        return error_response(404, str(exc), code="model_not_found")

    @app.exception_handler(L2VError)
    async def user_error(_request: Request, exc: L2VError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(
            exc.status_code,
            str(exc.detail),
            "not_found_error" if exc.status_code == 404 else "invalid_request_error",
        )

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")
