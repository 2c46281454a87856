"""Baimo's exception classes; each one knows its HTTP status and OpenAI error type, mapped once in api/errors.py."""

from __future__ import annotations


class BaimoError(Exception):
    """Base error: carries the OpenAI error fields so the API and CLI can report it the same way."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers  # extra response headers, e.g. Retry-After
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class InvalidRequest(BaimoError):
    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    status_code = 415
    code = "unsupported_media_type"


class UnprocessableFile(InvalidRequest):
    """An uploaded file that cannot be indexed (empty, no text, password-protected, ...): '<name>: <reason>'."""

    status_code = 422
    code = "unprocessable_file"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class NotFound(BaimoError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class AuthenticationError(BaimoError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(BaimoError):
    """A valid key asking for something only an admin key may do (managing keys and teams)."""

    status_code = 403
    error_type = "permission_error"
    code = "admin_only"


class UpstreamError(BaimoError):
    """The model backend answered with an error or an unreadable response."""

    status_code = 502
    error_type = "upstream_error"
    code = "bad_gateway"


class UpstreamUnavailable(UpstreamError):
    """The model backend could not be reached or is not ready."""

    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class ConfigError(BaimoError):
    """baimo.yaml or the environment is wrong; reported as one line by the CLI."""

    error_type = "configuration_error"
    code = "bad_config"


class Conflict(BaimoError):
    """The thing already exists (a knowledge base or persona name)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class BudgetExceeded(BaimoError):
    """A persona has spent its monthly budget."""

    status_code = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"
