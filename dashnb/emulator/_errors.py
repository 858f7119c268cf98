"""The service's errors the emulator can answer with, by code, each with where its words come from.

    >>> ERRORS["Throttling.RateQuota"].status
    429
    >>> lookup("rate_quota").code
    'Throttling.RateQuota'

Two uses. A test scripts one (``emu.script.error("Throttling.RateQuota")``, by code or by the
catalogue's short name), and the request checks (`_request`) raise the service's refusals of
parameter combinations it does not serve, with its exact words (`REFUSALS`, switched off by the
emulator option ``strict=False``). Compatible mode shows each code the OpenAI way (`_wire`).
Standard library only and no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ERRORS", "REFUSALS", "ServiceError", "lookup"]


@dataclass(frozen=True)
class ServiceError:
    status: int
    code: str  # the native protocol's code (compatible mode maps a few, see `_wire`)
    message: str
    source: str  # where the status, code and words were read


_PROTOCOL_PAGE = "the wire-protocol reference (dashscope SDK 2.0.2 and a throwaway server)"
_ERROR_CODES = "Model Studio documentation, 'Error messages' (error codes of the DashScope API)"

#: The errors a script may ask for, by the service's code.
ERRORS = MappingProxyType(
    {
        e.code: e
        for e in (
            ServiceError(400, "InvalidParameter", "The request is invalid (scripted).", _PROTOCOL_PAGE),
            ServiceError(401, "InvalidApiKey", "Invalid API-key provided.", _PROTOCOL_PAGE),
            ServiceError(
                400,
                "DataInspectionFailed",
                "Input data may contain inappropriate content.",
                _ERROR_CODES,
            ),
            ServiceError(
                400,
                "Arrearage",
                "Access denied, please make sure your account is in good standing.",
                _ERROR_CODES,
            ),
            ServiceError(
                429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", _PROTOCOL_PAGE
            ),
            ServiceError(
                429,
                "Throttling.AllocationQuota",
                "Allocated quota exceeded, please increase your quota limit.",
                _ERROR_CODES,
            ),
            ServiceError(
                500, "InternalError", "An internal error has occurred, please retry (emulated).", _ERROR_CODES
            ),
            ServiceError(503, "ServiceUnavailable", "The service is temporarily overloaded (emulated).", _ERROR_CODES),
        )
    }
)

# Short names a test may use instead of the code: "rate_quota" reads better in a test than a code.
_ALIASES = MappingProxyType(
    {
        "invalid_parameter": "InvalidParameter",
        "invalid_api_key": "InvalidApiKey",
        "data_inspection_failed": "DataInspectionFailed",
        "arrearage": "Arrearage",
        "rate_quota": "Throttling.RateQuota",
        "allocation_quota": "Throttling.AllocationQuota",
        "internal_error": "InternalError",
        "service_unavailable": "ServiceUnavailable",
    }
)


def lookup(name: str) -> ServiceError:
    """The catalogue's error called ``name`` (its code or short name); ValueError naming the choices."""
    found = ERRORS.get(name) or ERRORS.get(_ALIASES.get(name, ""))
    if found is None:
        raise ValueError(
            f"no error {name!r} in the emulator's catalogue; use one of {', '.join(ERRORS)} (or {', '.join(_ALIASES)})"
        )
    return found


_FUNCTION_CALLING = (
    "Model Studio documentation, 'Function calling' (thinking mode: tool_choice may only be auto or none), "
    "and the service's 400 as quoted in dashnb issue 24"
)
_DEEP_THINKING = (
    "Model Studio documentation, 'Deep thinking' (\"The thinking mode only supports incremental output.\"), and a "
    "captured response: '<400> InternalError.Algo.InvalidParameter: This model only supports incremental_output "
    "set to True.' (langgenius/dify-official-plugins#825, qwen3-30b-a3b)"
)
_JSON_MODE = (
    "a captured compatible-mode response: 400 invalid_parameter_error, '<400> InternalError.Algo.InvalidParameter: "
    "Json mode response is not supported when enable_thinking is true'; Model Studio documentation, "
    "'Structured output' (not in thinking mode)"
)

#: Parameter combinations the service refuses, with its words. Compatible mode shows the code as
#: ``invalid_parameter_error`` and prefixes the message as the service does (see `_wire`).
REFUSALS = MappingProxyType(
    {
        "thinking_tool_choice": ServiceError(
            400,
            "InvalidParameter",
            "The tool_choice parameter does not support being set to required or object in thinking mode",
            _FUNCTION_CALLING,
        ),
        "thinking_json_mode": ServiceError(
            400,
            "InvalidParameter",
            "Json mode response is not supported when enable_thinking is true",
            _JSON_MODE,
        ),
        "thinking_not_incremental": ServiceError(
            400,
            "InvalidParameter",
            "This model only supports incremental_output set to True.",
            _DEEP_THINKING,
        ),
    }
)
