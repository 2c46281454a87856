"""One place that turns exceptions into OpenAI-shaped error responses: {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from baimo.errors import BaimoError

log = logging.getLogger("baimo.api")


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _param(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request.", None, "invalid_json"
    param = _param(tuple(err.get("loc", ())))
    if err.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    if err.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    return f"Invalid value for '{param}': {msg}" if param else msg, param, "invalid_value"


_FASTAPI_BODY_ERROR = "There was an error parsing the body"  # FastAPI's detail when decoding the body raised


def _unreadable_body(cause: BaseException | None) -> str:
    """Why a JSON body could not be read: invalid UTF-8, or nested deeper than the JSON parser's recursion limit."""
    reason = {UnicodeDecodeError: "it is not valid UTF-8",
              RecursionError: "it is nested too deeply"}.get(type(cause), "it is not valid JSON")
    return f"We could not parse the JSON body of your request: {reason}."


def install_error_handlers(app: FastAPI) -> None:
    from baimo.api.disconnect import ClientGone
    from baimo.api.usage_routes import record_refusal  # not at the top: usage_routes imports the app's state

    @app.exception_handler(BaimoError)
    async def _baimo(request: Request, exc: BaimoError) -> JSONResponse:
        if not getattr(exc, "usage_recorded", False):  # refused before a model ran: metered all the same
            await record_refusal(request, exc.status_code, exc.message)
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientGone)
    async def _gone(_request: Request, _exc: ClientGone) -> Response:
        return Response(status_code=499)  # nginx's "client closed request": no one reads it; the usage row says it

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _validation_message(exc)
        await record_refusal(request, 400, message, exc.body)
        return JSONResponse(error_body(message, "invalid_request_error", param, code), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:  # reading or decoding the body raised
            if isinstance(exc.__cause__, BaimoError):  # e.g. PayloadTooLarge from BodyLimits' receive
                return await _baimo(_request, exc.__cause__)
            return JSONResponse(error_body(_unreadable_body(exc.__cause__), "invalid_request_error", None,
                                           "invalid_json"), status_code=400)
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), type_, None, code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        await record_refusal(request, 500, f"internal error: {type(exc).__name__}")
        return JSONResponse(error_body("The server had an error while processing your request.",
                                       "server_error", None, "internal_error"), status_code=500)
