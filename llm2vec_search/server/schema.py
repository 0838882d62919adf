"""The search request both servers accept, generated from `SearchOptions`: the HTTP body model and the MCP
`search` tool's signature get its fields, descriptions and bounds, so an option added there is served here."""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..indexing.options import SearchOptions


def request_fields(max_k: int, max_query_chars: int) -> dict[str, tuple[Any, Any]]:
    """name → (annotated type, default) for the query, every option (`k` capped at the server's limit) and
    the index, in that order."""
    query = Field(min_length=1, max_length=max_query_chars, description="What to look for.")
    pairs: dict[str, tuple[Any, Any]] = {"query": (Annotated[str, query], inspect.Parameter.empty)}
    for option in fields(SearchOptions):
        constraints = dict(option.metadata)
        if option.name == "k":
            constraints["le"] = min(constraints["le"], max_k)
        pairs[option.name] = (Annotated[option.type, Field(**constraints)], option.default)
    index = Field(description="Index to use (see the status tool); the first served index when omitted.")
    pairs["index"] = (Annotated[str | None, index], None)
    return pairs


def options_from(values: Mapping[str, Any]) -> SearchOptions:
    """The `SearchOptions` in a validated request's values (which also hold the query and the index)."""
    return SearchOptions(**{option.name: values[option.name] for option in fields(SearchOptions)})


def search_request_model(max_k: int, max_query_chars: int) -> type[BaseModel]:
    """`POST /search`'s body; unknown fields are refused."""
    body = {
        name: (kind, ...) if default is inspect.Parameter.empty else (kind, default)
        for name, (kind, default) in request_fields(max_k, max_query_chars).items()
    }
    return create_model("SearchRequest", __config__=ConfigDict(extra="forbid"), **body)


def with_search_signature(tool: Callable[..., Any], max_k: int, max_query_chars: int) -> Callable[..., Any]:
    """Give `tool(**arguments)` the signature the MCP SDK builds the `search` tool's schema from."""
    tool.__signature__ = inspect.Signature(
        [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
            for name, (kind, default) in request_fields(max_k, max_query_chars).items()
        ],
        return_annotation=dict,
    )
    return tool
