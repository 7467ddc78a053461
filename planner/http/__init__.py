"""The HTTP service (extra ``http``): the seed's endpoints as an ASGI app.

::

    from planner import Planner
    from planner.http import StaticTokenVerifier, create_app

    app = create_app(Planner(), verifier=StaticTokenVerifier({"secret-token": "acme"}))
    # uvicorn module:app, or ``planner serve``

See ``docs/http.md`` for the routes, authentication and streaming.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - the http extra installs them
    from planner.errors import MissingExtraError

    raise MissingExtraError("planner.http", "http", exc.name or "starlette") from None

from planner.http.app import DEFAULT_MAX_BODY_SIZE, PlannerApp, create_app
from planner.http.auth import (
    AnyVerifier,
    JWTVerifier,
    Principal,
    StaticTokenVerifier,
    TokenVerifier,
    verifier_from_env,
)
from planner.http.server import PlannerServer, serve

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "AnyVerifier",
    "JWTVerifier",
    "PlannerApp",
    "PlannerServer",
    "Principal",
    "StaticTokenVerifier",
    "TokenVerifier",
    "create_app",
    "serve",
    "verifier_from_env",
]
