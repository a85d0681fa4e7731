"""The contract suite's test task types for the Python SDK (``--module tests.contract.python_tasks``).

``tests/contract/node_worker.js`` registers the same types with the same behaviour in Node.js;
``scenarios.yaml`` describes what each must produce. Keep the two files in step.
"""

from __future__ import annotations

import time

from worker_sdk import TaskFailure, TaskResult, task

SDK = "python"

TYPED_OUTPUTS = {
    "int": 42,
    "negative": -7,
    "float": 1.5,
    "bool": True,
    "none": None,
    "text": "plain text",
    "list": [1, "two", 3.25, False, None],
    "object": {"nested": {"deep": [True, {"k": "v"}]}},
    "maxSafeInteger": 9007199254740991,
}
"""What ``io.kestrel.contract.Typed`` returns: one value of each JSON type (no integral floats,
which JSON cannot tell from integers)."""


@task("io.kestrel.contract.Echo")
def echo(ctx, props: dict) -> dict | TaskResult:
    """Returns ``{"value": props["value"]}`` and logs it once; ends WARNING when ``warning``."""
    ctx.log.info(f"echo: {props.get('value')}")
    outputs = {"value": props.get("value")}
    return TaskResult(outputs, warning=True) if props.get("warning") else outputs


@task("io.kestrel.contract.Typed")
def typed(ctx, props: dict) -> dict:
    """Returns `TYPED_OUTPUTS`."""
    return dict(TYPED_OUTPUTS)


@task("io.kestrel.contract.Fail")
def fail(ctx, props: dict) -> dict:
    """Fails with ``props["message"]`` as the error, keeping ``{"partial": 1}`` as outputs;
    from attempt ``succeedOnAttempt`` on (when given) succeeds with ``{"attempt": n}``."""
    if "succeedOnAttempt" in props and ctx.attempt >= int(props["succeedOnAttempt"]):
        return {"attempt": ctx.attempt}
    raise TaskFailure(str(props.get("message", "failed on purpose")), outputs={"partial": 1})


@task("io.kestrel.contract.Sleep")
def sleep(ctx, props: dict) -> dict:
    """Sleeps ``seconds`` while ``ctx.attempt <= sleepAttempts`` (default: every attempt), honouring
    cancellation (logs ``stopping: cancellation requested`` and raises); returns
    ``{"attempt": n, "slept": bool}``."""
    seconds = float(props.get("seconds", 1))
    slept = ctx.attempt <= int(props.get("sleepAttempts", 1000))
    if slept:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ctx.cancelled.wait(0.05):
                ctx.log.warn("stopping: cancellation requested")
                raise RuntimeError("cancelled")
    return {"attempt": ctx.attempt, "slept": slept}


@task("io.kestrel.contract.Logs")
def logs(ctx, props: dict) -> dict:
    """Logs ``count`` lines ``line 0001 ✓`` … in order; returns ``{"count": count}``."""
    count = int(props.get("count", 10))
    for i in range(1, count + 1):
        ctx.log.info(f"line {i:04d} ✓")
    return {"count": count}


@task("io.kestrel.contract.Big")
def big(ctx, props: dict) -> dict:
    """Returns ``{"text": unit * times, "times": times}`` (a large, non-ASCII output)."""
    unit, times = str(props["unit"]), int(props["times"])
    return {"text": unit * times, "times": times}


@task("io.kestrel.contract.Files")
async def files(ctx, props: dict) -> dict:
    """Internal storage and KV from a task. ``op: write``: uploads ``unit * times`` as
    ``data.txt`` and stores ``{"uri": uri}`` under KV ``key``; returns ``{"uri"}``. ``op: read``:
    downloads ``uri``, reads KV ``key`` and a missing key; returns ``{"matches": content ==
    unit * times, "size": bytes, "kvSame": kv uri == uri, "missing": None}``."""
    content = str(props["unit"]) * int(props["times"])
    if props["op"] == "write":
        path = ctx.working_dir / "source.txt"
        path.write_text(content, encoding="utf-8")
        uri = await ctx.storage.upload(path, "data.txt")
        await ctx.kv.set(props["key"], {"uri": uri})
        return {"uri": uri}
    local = await ctx.storage.download(props["uri"], ctx.working_dir / "copy.txt")
    data = local.read_bytes()
    entry = await ctx.kv.get(props["key"])
    missing = await ctx.kv.get(props["key"] + "-missing")
    return {
        "matches": data.decode("utf-8") == content,
        "size": len(data),
        "kvSame": entry is not None and entry.value == {"uri": props["uri"]},
        "missing": missing,
    }


@task("io.kestrel.contract.python.Whoami")
async def whoami(ctx, props: dict) -> dict:
    """Returns ``{"sdk": "python", "previous": props.get("previous")}`` (mixed-fleet routing);
    with ``write`` also uploads that text (``uri``), with ``read`` downloads that URI (``read``)."""
    outputs = {"sdk": SDK, "previous": props.get("previous")}
    if "write" in props:
        outputs["uri"] = await ctx.storage.upload_bytes(str(props["write"]).encode("utf-8"), f"from-{SDK}.txt")
    if "read" in props:
        outputs["read"] = (await ctx.storage.read_bytes(props["read"])).decode("utf-8")
    return outputs
