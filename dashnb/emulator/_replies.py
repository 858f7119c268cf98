"""What the emulator says, with no I/O: request validation, deterministic replies, wire framing.

    >>> req = parse_native({"model": "qwen-plus", "input": {"prompt": "hi"}})
    >>> reply = compose(req, reply_tokens=4)
    >>> "".join(reply.tokens) == reply.text
    True

The face the server (``_server``) reads all three through, one module each: ``_request`` parses
and checks a request (``parse_native``, ``parse_compatible``, ``check_mode``), ``_compose``
composes its ``Reply`` (``compose``, ``compose_choices``), ``_wire`` frames it for either protocol
(``native_body``, ``native_events``, ``compatible_body``, ``compatible_chunks``, the error
bodies). Everything is a pure function of the request, so a streamed reply concatenates to
exactly the non-streamed one and a notebook can check the text it gets back. The words come from
`_prose`, tool calls from `_tools`, structured values from `_schema`, model facts from `_catalogue`.
"""

from __future__ import annotations

from ._compose import Reply, compose, compose_choices, count_tokens
from ._request import (
    KNOWN_MODELS,
    MAX_CHOICES,
    GenerationRequest,
    RequestError,
    check_mode,
    parse_compatible,
    parse_native,
)
from ._wire import (
    compatible_body,
    compatible_chunks,
    compatible_error,
    native_body,
    native_error,
    native_events,
    sse_event,
)

__all__ = [
    "KNOWN_MODELS",
    "MAX_CHOICES",
    "GenerationRequest",
    "Reply",
    "RequestError",
    "check_mode",
    "compatible_body",
    "compatible_chunks",
    "compatible_error",
    "compose",
    "compose_choices",
    "count_tokens",
    "native_body",
    "native_error",
    "native_events",
    "parse_compatible",
    "parse_native",
    "sse_event",
]
