"""Running the app with uvicorn, with a graceful shutdown for open streams.

On SIGINT/SIGTERM uvicorn stops accepting connections and waits for the open
requests to end.  An event stream would not end by itself, so
:class:`PlannerServer` first ends every open stream with a final ``shutdown``
frame; then the app's lifespan closes the Planner, whose executor decides
what happens to generations still in flight (the in-process executor waits
``shutdown_timeout`` seconds, then cancels them; Temporal keeps them running).
"""

from __future__ import annotations

import socket

import uvicorn

from planner.http.app import PlannerApp

__all__ = ["PlannerServer", "serve"]


class PlannerServer(uvicorn.Server):
    """A uvicorn server that ends the app's event streams when it begins to shut down.

    Args:
        config: the uvicorn config; its ``app`` is a :class:`PlannerApp`.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        if not isinstance(config.app, PlannerApp):
            raise TypeError("PlannerServer serves a PlannerApp (from planner.http.create_app)")
        self.planner_app: PlannerApp = config.app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the open event streams, then shut down as uvicorn does."""
        self.planner_app.close_streams()
        await super().shutdown(sockets)


def serve(
    app: PlannerApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    timeout_graceful_shutdown: int | None = 30,
) -> None:
    """Serve the app with uvicorn until SIGINT or SIGTERM (blocks).

    Args:
        app: the app from :func:`planner.http.create_app`.
        host, port: where to listen.
        log_level: uvicorn's log level.
        timeout_graceful_shutdown: seconds to wait for open requests at shutdown.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        server_header=False,
    )
    PlannerServer(config).run()
