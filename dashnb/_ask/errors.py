"""What a failed ``ask`` says: ``AskError``, the hint that tells what to change for each HTTP
status, and the scrubbing that keeps the API key out of any text shown or raised.

    >>> from dashnb._ask.errors import _hint
    >>> _hint(503, None).startswith("The service failed on its side")
    True
"""

from __future__ import annotations

from .._endpoint import Secret


class AskError(RuntimeError):
    """A call made by ``dashnb.ask`` failed; the message says what to change.

    ``status_code`` is the HTTP status (``None`` when no response came), ``code`` the
    DashScope error code (``"InvalidApiKey"``, ``"Throttling.RateQuota"``...).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        #: The model name the service does not know, when that is what failed.
        self.unknown_model: str | None = None


# A 4xx (but 429) is the request's fault: asking again unchanged fails the same way, so the hint
# says what in *your request* to change. A 5xx or 429 is the service's state: try again.
_HINTS = {
    400: "Your request was refused: check the model name and the extra parameters "
    "(everything passed to ask() besides its own arguments is sent to the service as is).",
    401: "Your request's API key was refused. Set DASHSCOPE_API_KEY to a Model Studio key for this region "
    "(Singapore 'intl' and Beijing 'cn' keys differ; dashnb.DashScope('cn') targets Beijing) and "
    "point the session at it: dashnb.session(endpoint=dashnb.endpoint()).",
    403: "Your request's key may not use this model here: check the model name, and that the key and the "
    "endpoint are in the same region.",
    404: "Your request went where nothing answers: check the model name and the region of the endpoint.",
    413: "Your request is too large: shorten the prompt or the system message to fit the limit named above.",
    429: "Rate limited: wait a moment and try again, or make fewer calls at once (the limit is per key and model).",
}
_CLIENT_HINT = (
    "Your request was refused: change what the message above names; asking again unchanged fails the same way."
)
_SERVER_HINT = (
    "The service failed on its side, not because of your request: try again in a moment (ask again); "
    "if it keeps failing, try another model."
)


_MALFORMED_HINT = (
    "The reply was malformed: the SDK could not parse one of its events, so the text "
    "would have a hole in it. Nothing was kept; ask again, and report it if it persists."
)


def _hint(status: int | None, code: str | None) -> str:
    if code == "Unknown":  # the SDK's label for an event whose data was not JSON
        return _MALFORMED_HINT
    if code == "InvalidApiKey":
        status = 401
    if status in _HINTS:
        return _HINTS[status]
    if status is not None and status >= 500:
        return _SERVER_HINT
    if status is not None and 400 <= status < 500:
        return _CLIENT_HINT
    return ""


def _scrub(text: str, secrets: list[Secret]) -> str:
    for secret in secrets:
        if secret.reveal():  # revealed in expressions only: no local of this frame holds the key
            text = text.replace(secret.reveal(), "<api key>")
    return text
