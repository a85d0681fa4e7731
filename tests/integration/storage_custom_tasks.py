"""Custom task types for the storage tests: the worker SDK's file and KV API from a sync task
(run in a thread: the ``*_sync`` methods) and from an async task."""

from __future__ import annotations

from worker_sdk import task


@task("io.kestrel.tests.WriteFile")
def write_file(ctx, props: dict) -> dict:
    """Writes ``content`` to a file and uploads it from a thread; returns its URI."""
    path = ctx.working_dir / props.get("name", "file.txt")
    path.write_text(props["content"])
    return {"uri": ctx.storage.upload_sync(path)}


@task("io.kestrel.tests.ReadFile")
async def read_file(ctx, props: dict) -> dict:
    """Downloads ``uri`` to a local path and returns its text, plus a KV round trip."""
    local = await ctx.storage.download(props["uri"], ctx.working_dir / "copy.txt")
    await ctx.kv.set("last", local.read_text())
    entry = await ctx.kv.get("last")
    return {"text": local.read_text(), "kv": entry.value, "local": str(local)}
