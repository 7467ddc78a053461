"""The ASGI app: the seed's endpoints over a :class:`~planner.Planner`.

Routes (all but health and ``/openapi.json`` need ``Authorization: Bearer``)::

    POST /api/v1/plans/generate                      TaskPlanRequest -> PlanGenerationResponse
    GET  /api/v1/executions                          ?status=&limit=&before=
    GET  /api/v1/executions/{execution_id}           the record, with plan_json
    GET  /api/v1/executions/{execution_id}/stream    Server-Sent Events, resumable
    POST /api/v1/executions/{execution_id}/cancel
    POST /api/v1/executions/{execution_id}/refine    RefineRequest -> PlanGenerationResponse
    GET  /api/v1/plans/generation/{execution_id}     the reference's status view
    GET  /api/v1/health, /health
    GET  /openapi.json

Every execution belongs to the tenant of the token that created it; any other
tenant gets 404 for its id, as for an id that does not exist.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from planner import __version__
from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    InvalidRequestError,
    PluginError,
    SubmitError,
)
from planner.execution import Execution, ExecutionStatus
from planner.http.auth import Principal, TokenVerifier, bearer_token, verifier_from_env
from planner.http.openapi import build_openapi
from planner.http.schemas import (
    ExecutionResponse,
    HealthResponse,
    PlanGenerationStatus,
    RefineRequest,
)
from planner.http.sse import EventStream, StreamRegistry
from planner.planner import Planner

__all__ = ["DEFAULT_MAX_BODY_SIZE", "PlannerApp", "create_app"]

logger = logging.getLogger("planner.http")

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""Request bodies above this many bytes get 413."""

_NOT_FOUND = "Execution not found"
_MAX_KEY = 200  # characters of an Idempotency-Key


class _HTTPError(Exception):
    """Ends a request with a JSON error body."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _detail(status: int, message: str, **extra: Any) -> _HTTPError:
    return _HTTPError(status, {"detail": message, **extra})


def _invalid(errors: list[dict[str, Any]], where: str) -> _HTTPError:
    return _HTTPError(
        422,
        {
            "detail": [
                {"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
            ]
        },
    )


class _ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: ExecutionStatus | None = None
    limit: int = Field(default=50, ge=1, le=200)
    before: str | None = Field(default=None, min_length=1)


class _StreamCursor(BaseModel):
    cursor: int = Field(default=0, ge=0)


class PlannerApp(Starlette):
    """The Starlette app that :func:`create_app` returns.

    Attributes:
        planner: the Planner behind the API.
        verifier: turns bearer tokens into tenants.
        streams: the open event streams; :meth:`close_streams` ends them.
        openapi: the OpenAPI document served at ``/openapi.json``.
    """

    planner: Planner
    verifier: TokenVerifier
    streams: StreamRegistry
    openapi: dict[str, Any]

    def close_streams(self) -> None:
        """End every open event stream with a final ``shutdown`` frame.

        Call it from the event loop when the server begins to shut down
        (``planner serve`` does), so that open streams do not hold it up.
        """
        self.streams.close_all()


def create_app(
    planner: Planner,
    *,
    verifier: TokenVerifier | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    keepalive: float = 15.0,
    manage_planner: bool = True,
) -> PlannerApp:
    """Return an ASGI app serving the seed's endpoints over ``planner``.

    Args:
        planner: the Planner (started by the app's lifespan when ``manage_planner``).
        verifier: checks bearer tokens; default: :func:`~planner.http.auth.verifier_from_env`
            (``PLANNER_API_TOKENS``, ``PLANNER_JWT_SECRET``, ``PLANNER_JWT_PUBLIC_KEY``).
        max_body_size: larger request bodies get 413.
        keepalive: seconds of silence on a stream before a keep-alive comment.
        manage_planner: start the Planner at the app's startup and close it at
            shutdown; pass False when you start and close it yourself (for
            instance when the app is mounted inside another, whose lifespan
            does not run this one's).

    Raises:
        ValueError: no verifier was given and the environment configures none.
    """
    if verifier is None:
        verifier = verifier_from_env()
        if verifier is None:
            raise ValueError(
                "no API tokens configured: pass verifier=, or set PLANNER_API_TOKENS "
                "(token=tenant,...), PLANNER_JWT_SECRET or PLANNER_JWT_PUBLIC_KEY"
            )
    if max_body_size < 1:
        raise ValueError(f"max_body_size must be at least 1, got {max_body_size}")
    api = _Api(planner, verifier, max_body_size, keepalive)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_planner:
            await planner.start()
        try:
            yield
        finally:
            api.streams.close_all()
            if manage_planner:
                await planner.close()

    routes = [
        Route("/api/v1/plans/generate", api.wrap(api.generate), methods=["POST"]),
        Route("/api/v1/executions", api.wrap(api.list), methods=["GET"]),
        Route("/api/v1/executions/{execution_id}", api.wrap(api.get), methods=["GET"]),
        Route("/api/v1/executions/{execution_id}/stream", api.wrap(api.stream), methods=["GET"]),
        Route("/api/v1/executions/{execution_id}/cancel", api.wrap(api.cancel), methods=["POST"]),
        Route("/api/v1/executions/{execution_id}/refine", api.wrap(api.refine), methods=["POST"]),
        Route("/api/v1/plans/generation/{execution_id}", api.wrap(api.status), methods=["GET"]),
        Route("/api/v1/health", api.health, methods=["GET"]),
        Route("/health", api.health, methods=["GET"]),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
    ]
    app = PlannerApp(routes=routes, lifespan=lifespan)
    app.planner = planner
    app.verifier = verifier
    app.streams = api.streams
    app.openapi = api.openapi
    return app


Handler = Callable[[Request, Principal], Awaitable[Response]]


class _Api:
    """The route handlers, sharing the Planner, the verifier and the open streams."""

    def __init__(
        self, planner: Planner, verifier: TokenVerifier, max_body_size: int, keepalive: float
    ) -> None:
        self.planner = planner
        self.verifier = verifier
        self.max_body_size = max_body_size
        self.keepalive = keepalive
        self.streams = StreamRegistry()
        self.openapi = build_openapi(max_body_size)

    # -- plumbing ------------------------------------------------------------------

    def wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate, call the handler, and turn known errors into JSON responses."""

        async def endpoint(request: Request) -> Response:
            try:
                principal = await self._authenticate(request)
                return await handler(request, principal)
            except _HTTPError as exc:
                return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
            except Exception:
                logger.exception("unexpected error in %s %s", request.method, request.url.path)
                return JSONResponse({"detail": "Internal server error"}, status_code=500)

        return endpoint

    async def _authenticate(self, request: Request) -> Principal:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise _HTTPError(401, {"detail": "Not authenticated"}, {"WWW-Authenticate": "Bearer"})
        principal = await self.verifier.verify(token)
        if principal is None:
            raise _HTTPError(
                401,
                {"detail": "Invalid or expired token"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return principal

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_size:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_size:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> _HTTPError:
        return _detail(413, f"Request body larger than {self.max_body_size} bytes")

    async def _json_body(self, request: Request) -> Any:
        body = await self._body(request)
        if not body.strip():
            raise _invalid([{"loc": [], "msg": "Field required", "type": "missing"}], "body")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            position = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
            raise _invalid(
                [{"loc": [position], "msg": "JSON decode error", "type": "json_invalid"}], "body"
            ) from None

    async def _owned(self, request: Request, principal: Principal) -> Execution:
        execution_id = request.path_params["execution_id"]
        try:
            execution = await self.planner.get(execution_id)
        except ExecutionNotFoundError:
            raise _detail(404, _NOT_FOUND) from None
        if execution.organization_id != principal.tenant:
            raise _detail(404, _NOT_FOUND)
        return execution

    @staticmethod
    def _model(model: BaseModel, status: int = 200) -> Response:
        return Response(model.model_dump_json(), status_code=status, media_type="application/json")

    # -- routes ----------------------------------------------------------------------

    async def generate(self, request: Request, principal: Principal) -> Response:
        """``POST /api/v1/plans/generate``."""
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= _MAX_KEY:
            raise _invalid(
                [
                    {
                        "loc": ["Idempotency-Key"],
                        "msg": f"String should have 1 to {_MAX_KEY} characters",
                        "type": "string_length",
                    }
                ],
                "header",
            )
        data = await self._json_body(request)
        try:
            response = await self.planner.generate(
                data, idempotency_key=key, organization_id=principal.tenant
            )
        except InvalidRequestError as exc:
            raise _HTTPError(422, exc.http_detail()) from None
        except PluginError as exc:  # the strategy is registered but cannot be loaded here
            raise _invalid(
                [{"loc": ["planning_strategy"], "msg": str(exc), "type": "strategy_unavailable"}],
                "body",
            ) from None
        except SubmitError as exc:
            logger.error("submit failed for execution %s", exc.execution_id)
            raise _detail(500, str(exc), execution_id=exc.execution_id) from None
        logger.info(
            "plan generation %s submitted (tenant %s)", response.execution_id, principal.tenant
        )
        return self._model(response)

    async def list(self, request: Request, principal: Principal) -> Response:
        """``GET /api/v1/executions``."""
        try:
            query = _ListQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise _invalid(_errors(exc), "query") from None
        if query.before is not None:
            try:
                cursor = await self.planner.get(query.before)
            except ExecutionNotFoundError:
                cursor = None
            if cursor is None or cursor.organization_id != principal.tenant:
                raise _detail(404, _NOT_FOUND)
        executions = await self.planner.list(
            status=query.status,
            limit=query.limit,
            before=query.before,
            organization_id=principal.tenant,
        )
        body = [ExecutionResponse.of(e).model_dump(mode="json") for e in executions]
        return JSONResponse(body)

    async def get(self, request: Request, principal: Principal) -> Response:
        """``GET /api/v1/executions/{execution_id}``."""
        return self._model(ExecutionResponse.of(await self._owned(request, principal)))

    async def status(self, request: Request, principal: Principal) -> Response:
        """``GET /api/v1/plans/generation/{execution_id}``."""
        return self._model(PlanGenerationStatus.of(await self._owned(request, principal)))

    async def stream(self, request: Request, principal: Principal) -> Response:
        """``GET /api/v1/executions/{execution_id}/stream``."""
        # The header wins: EventSource reconnects to the same URL with a newer id in it.
        raw = request.headers.get("last-event-id")
        where, name = "header", "Last-Event-ID"
        if raw is None:
            raw = request.query_params.get("last_event_id")
            where, name = "query", "last_event_id"
        try:
            after = _StreamCursor.model_validate({"cursor": raw or 0}).cursor
        except ValidationError as exc:
            errors = [{**e, "loc": [name]} for e in _errors(exc)]
            raise _invalid(errors, where) from None
        execution = await self._owned(request, principal)
        return EventStream(self.planner.store, execution.id, after, self.streams, self.keepalive)

    async def cancel(self, request: Request, principal: Principal) -> Response:
        """``POST /api/v1/executions/{execution_id}/cancel``."""
        execution = await self._owned(request, principal)
        try:
            cancelled = await self.planner.cancel(execution.id)
        except ExecutionFinishedError as exc:
            raise _detail(409, str(exc), execution_id=execution.id) from None
        return self._model(ExecutionResponse.of(cancelled))

    async def refine(self, request: Request, principal: Principal) -> Response:
        """``POST /api/v1/executions/{execution_id}/refine``."""
        execution = await self._owned(request, principal)
        data = await self._json_body(request)
        try:
            body = RefineRequest.model_validate(data)
        except ValidationError as exc:
            raise _invalid(_errors(exc), "body") from None
        try:
            response = await self.planner.refine(
                execution.id,
                body.refinement_feedback,
                conversation_context=body.conversation_context,
            )
        except InvalidRequestError as exc:
            raise _HTTPError(422, exc.http_detail()) from None
        except ExecutionStateError as exc:
            raise _detail(409, str(exc), execution_id=execution.id) from None
        except SubmitError as exc:
            logger.error("submit failed for execution %s", exc.execution_id)
            raise _detail(500, str(exc), execution_id=exc.execution_id) from None
        return self._model(response)

    async def health(self, request: Request) -> Response:
        """``GET /health``: no authentication."""
        return self._model(HealthResponse(version=__version__))

    async def openapi_json(self, request: Request) -> Response:
        """``GET /openapi.json``: no authentication."""
        return JSONResponse(self.openapi)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
