"""The HTTP front door: ask over HTTP, Server-Sent Events or WebSocket, publish events,
health and metrics, and a chat page. Start it with ``ragbus serve``.

``create_app(settings, client=None)`` builds the Starlette app; ``serve(settings)`` runs
it with uvicorn.
"""

from ragbus.gateway.app import create_app
from ragbus.gateway.server import serve

__all__ = ["create_app", "serve"]
