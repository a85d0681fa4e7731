"""The state of the render in progress: its variables, deadline and ``render()`` nesting depth.

Held in a :class:`contextvars.ContextVar` so functions that need the render context
(``render()``, ``printContext()``, ``currentEachOutput()``, services such as ``secret()``) can
read it without Jinja plumbing, and so nested ``render()`` calls share one deadline. Safe with
threads and asyncio tasks.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Budget:
    """The time budget of a top-level render, shared by its nested ``render()`` calls.

    Attributes:
        deadline: ``time.monotonic()`` value after which rendering fails. Only moved later to
            leave out time not spent on the template (starting the jq helper process).
    """

    deadline: float


@dataclass(frozen=True)
class RenderState:
    """One render.

    Attributes:
        context: The variables given to the render (``inputs``, ``outputs``, ``taskrun``…),
            without template-local ``{% set %}`` variables (as Kestra's render context).
        budget: The time budget, shared with the enclosing render.
        depth: How many ``render()`` calls are nested (0 for the top-level render).
    """

    context: Mapping[str, Any]
    budget: Budget
    depth: int = 0

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` value after which rendering fails."""
        return self.budget.deadline


_CURRENT: contextvars.ContextVar[RenderState | None] = contextvars.ContextVar("kestrel_render", default=None)


def current() -> RenderState | None:
    """The render in progress in this thread/task, or ``None`` outside rendering."""
    return _CURRENT.get()


@contextmanager
def rendering(context: Mapping[str, Any], timeout: float) -> Iterator[RenderState]:
    """Enter a render: a new top-level state, or a nested one sharing the outer deadline.

    Args:
        context: Variables of this render.
        timeout: Seconds allowed for a top-level render (ignored when nested).
    """
    outer = _CURRENT.get()
    if outer is None:
        state = RenderState(context=context, budget=Budget(time.monotonic() + timeout))
    else:
        state = RenderState(context=context, budget=outer.budget, depth=outer.depth + 1)
    token = _CURRENT.set(state)
    try:
        yield state
    finally:
        _CURRENT.reset(token)
