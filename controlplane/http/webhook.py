"""Webhook triggers over HTTP (Kestra's ``io.kestra.plugin.core.trigger.Webhook``).

``GET|POST|PUT /api/v1/executions/webhook/{namespace}/{flowId}/{key}`` (also with a tenant:
``/api/v1/main/executions/webhook/…``) starts the flow when one
of its enabled Webhook triggers has that ``key``. The execution sees ``trigger.body`` (the JSON
body parsed, else the text), ``trigger.headers`` and ``trigger.parameters`` (name -> list of
values, as Kestra). Answers:

- 200 with ``{"id", "namespace", "flowId", "state"}`` (with ``wait: true`` on the trigger: after
  the execution ended, plus ``outputs`` when ``returnOutputs: true``);
- 404 ``{"message": "Not Found"}`` for an unknown, deleted or disabled flow, a wrong key, a
  disabled trigger or unmet conditions, alike, so the key cannot be guessed from the answers;
- 413 when the body is larger than ``webhook_max_body_bytes``;
- 400 when the trigger's inputs do not fit the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from controlplane import secrets
from controlplane.errors import ExpressionError, InputValidationError
from controlplane.store import repository as repo

log = logging.getLogger(__name__)

_NOT_FOUND = {"message": "Not Found"}


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _body_value(raw: bytes) -> Any:
    """Kestra's ``trigger.body``: parsed JSON when the body is JSON, else the text (None if empty)."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    try:
        value = json.loads(text, parse_constant=lambda _: None)
        # Storable as Postgres jsonb: escaped NULs become U+FFFD, lone surrogates "?".
        cleaned = json.dumps(value, ensure_ascii=False).replace("\\u0000", "\ufffd")
        return json.loads(cleaned.encode("utf-8", "replace").decode("utf-8"))
    except RecursionError:
        return text  # nested too deeply to use as JSON: the body stays text
    except ValueError:
        return text


def _multi(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in items:
        found.setdefault(name, []).append(value)
    return found


def webhook_app(control_plane: Any) -> Starlette:
    """The Starlette application serving webhooks for ``control_plane`` (a started
    :class:`controlplane.server.ControlPlane`: ``scheduler``, ``transaction``, ``events``, ``settings``)."""

    async def webhook(request: Request) -> JSONResponse:
        cp = control_plane
        namespace = request.path_params["namespace"]
        flow_id = request.path_params["flow_id"]
        key = request.path_params["key"]
        try:
            raw = await _read_body(request, cp.settings.webhook_max_body_bytes)
        except _TooLarge:
            return JSONResponse({"message": f"request body larger than {cp.settings.webhook_max_body_bytes} bytes"},
                                status_code=413)
        variables = {
            "body": _body_value(raw),
            "headers": _multi([(k.lower(), v) for k, v in request.headers.items()]),
            "parameters": _multi(list(request.query_params.multi_items())),
        }
        try:
            started = await cp.scheduler.fire_webhook(namespace, flow_id, key, variables)
        except (InputValidationError, ExpressionError) as exc:
            return JSONResponse({"message": secrets.mask(str(exc))}, status_code=400)
        if started is None:
            return JSONResponse(_NOT_FOUND, status_code=404)
        execution_id, flow = started
        trigger = next((t for t in flow.triggers if str(t.get("key")) == key), {})
        execution = await _wait(cp, execution_id, trigger.get("wait") is True)
        payload: dict[str, Any] = {"id": execution.id, "namespace": execution.namespace,
                                   "flowId": execution.flow_id, "state": execution.state.value}
        if trigger.get("wait") is True and trigger.get("returnOutputs") is True:
            # The response is an API response: secret values (and SECRET inputs) are masked.
            payload["outputs"] = json.loads(secrets.execution_masker(execution.inputs).mask(
                json.dumps(execution.outputs or {}, ensure_ascii=False)))
        return JSONResponse(payload)

    methods = ["GET", "POST", "PUT"]
    routes = [
        Route("/api/v1/executions/webhook/{namespace}/{flow_id}/{key}", webhook, methods=methods),
        # Kestra >= 0.20 puts a tenant in the path (``main`` by default); there is one tenant here.
        Route("/api/v1/{tenant}/executions/webhook/{namespace}/{flow_id}/{key}", webhook, methods=methods),
    ]
    return Starlette(routes=routes)


async def _wait(cp: Any, execution_id: str, wait: bool) -> Any:
    """The execution now, or (``wait``) once it ended or ``webhook_wait_seconds`` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cp.settings.webhook_wait_seconds
    with cp.events.watch_execution(execution_id) as changed:
        while True:
            changed.clear()
            async with cp.transaction() as unit:
                execution = await repo.get_execution(unit.conn, execution_id, with_task_runs=False)
            if not wait or execution.state.is_terminal or loop.time() >= deadline:
                return execution
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(1.0, max(0.0, deadline - loop.time())))
