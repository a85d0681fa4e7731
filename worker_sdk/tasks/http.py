"""``io.kestra.plugin.core.http.{Request,Download}`` on httpx (aliases
``io.kestra.plugin.fs.http.*``).

Kestra reference: FEATURES.md §3 (``http.Request``, ``http.Download``).

* ``uri``* (http/https), ``method`` (GET), ``headers`` (map; list values repeat the header),
  ``body`` (text; a map or list is sent as JSON), ``formData`` (map, sent url-encoded, or as
  multipart when ``contentType`` is ``multipart/form-data``), ``contentType``.
* ``options``: ``connectTimeout``/``readTimeout``/``timeout`` (ISO-8601 durations or seconds;
  default 10 s connect, 60 s read), ``followRedirects`` (true), ``basicAuthUser``/
  ``basicAuthPassword``, ``allowFailed``, ``allowedResponseCodes`` (list of codes).
* A status >= 400 fails the task run ("Failed http request with response code '404'") unless
  ``allowFailed`` (top level or in ``options``) or the code is in ``allowedResponseCodes``; a
  code outside ``allowedResponseCodes`` fails even below 400.
* Request outputs ``uri``, ``code``, ``headers`` (name → list of values) and ``body`` (text,
  at most :data:`MAX_BODY` bytes: use Download for larger responses). Download streams the
  body to internal storage (constant memory) and outputs ``uri`` (the stored file), ``code``,
  ``length``, ``headers``; an empty body fails unless ``failOnEmptyResponse`` is false.
* Not supported: ``sslOptions``, proxies, ``encryptBody`` (refused with a message).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlparse

import httpx

from worker_sdk.context import TaskContext, TaskFailure
from worker_sdk.tasks._props import boolean, to_text
from worker_sdk.tasks.flow import parse_duration

REQUEST_TYPE = "io.kestra.plugin.core.http.Request"
DOWNLOAD_TYPE = "io.kestra.plugin.core.http.Download"
#: Largest response body a Request keeps in its outputs (bytes).
MAX_BODY = 1024 * 1024
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _seconds(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name)
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise TaskFailure(f"property 'options.{name}': {exc}") from None


def _request_args(props: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(httpx.Client arguments, request arguments) from the properties."""
    uri = to_text(props.get("uri") or "")
    if urlparse(uri).scheme not in ("http", "https") or not urlparse(uri).netloc:
        raise TaskFailure(f"property 'uri' must be an http(s) URL, got {uri[:200]!r}")
    method = to_text(props.get("method") or "GET").upper()
    if method not in _METHODS:
        raise TaskFailure(f"property 'method' must be one of {', '.join(_METHODS)}, got {method!r}")
    for unsupported in ("sslOptions", "encryptBody"):
        if props.get(unsupported) not in (None, False):
            raise TaskFailure(f"property '{unsupported}' is not supported by Kestrel's http tasks")
    options = props.get("options") or {}
    if not isinstance(options, Mapping):
        raise TaskFailure("property 'options' must be a map")
    if options.get("proxyAddress") or options.get("proxy"):
        raise TaskFailure("property 'options.proxy…' is not supported by Kestrel's http tasks")
    connect = _seconds(options, "connectTimeout", 10.0)
    read = _seconds(options, "readTimeout", _seconds(options, "timeout", 60.0))
    client: dict[str, Any] = {
        "timeout": httpx.Timeout(read, connect=connect),
        "follow_redirects": boolean(options, "followRedirects", True),
    }
    if options.get("basicAuthUser") is not None:
        client["auth"] = (to_text(options["basicAuthUser"]), to_text(options.get("basicAuthPassword")))
    headers: list[tuple[str, str]] = []
    raw_headers = props.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise TaskFailure("property 'headers' must be a map")
    for name, value in raw_headers.items():
        for item in value if isinstance(value, list) else [value]:
            headers.append((str(name), to_text(item)))
    content_type = props.get("contentType")
    request: dict[str, Any] = {"method": method, "url": uri, "headers": headers}
    form = props.get("formData")
    if form is not None:
        if not isinstance(form, Mapping):
            raise TaskFailure("property 'formData' must be a map")
        if content_type and str(content_type).startswith("multipart/form-data"):
            request["files"] = {str(k): (None, to_text(v)) for k, v in form.items()}
        else:
            request["data"] = {str(k): to_text(v) for k, v in form.items()}
    elif props.get("body") is not None:
        body = props["body"]
        if isinstance(body, dict | list):
            request["content"] = json.dumps(body).encode()
            content_type = content_type or "application/json"
        else:
            request["content"] = to_text(body).encode()
        if content_type:
            headers.append(("Content-Type", to_text(content_type)))
    return client, request


def _check_status(props: Mapping[str, Any], code: int) -> None:
    options = props.get("options") or {}
    allowed = options.get("allowedResponseCodes") or props.get("allowedResponseCodes")
    if allowed is not None:
        codes = {int(c) for c in (allowed if isinstance(allowed, list) else [allowed])}
        if code not in codes:
            raise TaskFailure(f"Failed http request with response code '{code}' (allowed: {sorted(codes)})")
        return
    if code >= 400 and not (boolean(props, "allowFailed", False) or boolean(options, "allowFailed", False)):
        raise TaskFailure(f"Failed http request with response code '{code}'")


def _headers(response: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        out.setdefault(name.lower(), []).append(value)
    return out


async def request(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``http.Request``; see the module docstring."""
    client_args, request_args = _request_args(props)
    try:
        async with httpx.AsyncClient(**client_args) as client, client.stream(**request_args) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise TaskFailure(f"response body over {MAX_BODY} bytes: use io.kestra.plugin.core.http.Download")
    except httpx.HTTPError as exc:
        raise TaskFailure(f"http request to {request_args['url']} failed: {type(exc).__name__}: {exc}") from None
    ctx.log.debug(f"{request_args['method']} {request_args['url']} -> {response.status_code}")
    outputs = {"uri": str(response.url), "code": response.status_code, "headers": _headers(response),
               "body": bytes(body).decode(response.encoding or "utf-8", errors="replace")}
    try:
        _check_status(props, response.status_code)
    except TaskFailure as failure:
        raise TaskFailure(failure.message, outputs=outputs) from None
    return outputs


def _file_name(response: httpx.Response) -> str:
    disposition = response.headers.get("content-disposition", "")
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value.strip('"'):
            return value.strip('"').replace("/", "_")
    name = unquote(urlparse(str(response.url)).path.rsplit("/", 1)[-1])
    return name.replace("\\", "_") if name not in ("", ".", "..") else "download"


async def download(ctx: TaskContext, props: Mapping[str, Any]) -> dict[str, Any]:
    """``http.Download``; see the module docstring."""
    if ctx.storage is None:
        raise TaskFailure("internal storage is only reachable on a worker")
    client_args, request_args = _request_args(props)
    target = ctx.working_dir / "download.part"
    length = 0
    try:
        async with httpx.AsyncClient(**client_args) as client, client.stream(**request_args) as response:
            _check_status(props, response.status_code)
            with open(target, "wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
                    length += len(chunk)
    except httpx.HTTPError as exc:
        raise TaskFailure(f"http download from {request_args['url']} failed: {type(exc).__name__}: {exc}") from None
    if length == 0 and boolean(props, "failOnEmptyResponse", True):
        raise TaskFailure(f"No response from server {request_args['url']} (empty body)")
    uri = await ctx.storage.upload(target, _file_name(response))
    return {"uri": uri, "code": response.status_code, "length": length, "headers": _headers(response)}


TASKS = {REQUEST_TYPE: request, DOWNLOAD_TYPE: download}
"""Type name → task function for the http tasks."""
