"""The control plane's HTTP server: Kestra's webhook endpoint
(``/api/v1/executions/webhook/{namespace}/{flowId}/{key}``) on Starlette, served by uvicorn
inside the control plane's event loop (``--http-port``)."""

from controlplane.http.server import HttpServer
from controlplane.http.webhook import webhook_app

__all__ = ["HttpServer", "webhook_app"]
