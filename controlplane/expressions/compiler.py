"""Jinja compilation of the ``__lazy_*`` calls the preprocessor emits.

Pebble evaluates some operands lazily or guards them: ``a ?? b`` evaluates ``b`` only when ``a``
is null or undefined (and an undefined ``a.b.c`` must not fail), ``x is defined`` must not fail on
an undefined ``x``, ``x | default(y)`` neither. Jinja evaluates call arguments eagerly, so the code
generator compiles a call to a name starting with ``__lazy_`` as
``environment.pebble_lazy['<name>'](lambda: arg1, lambda: arg2, …)``; the helper (``lazy.py``)
decides which thunks to run and which errors to catch. (Jinja forbids custom node types, so the
call node itself is recognised.)
"""

from __future__ import annotations

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

LAZY_PREFIX = "__lazy_"


def lazy_name(node: nodes.Call) -> str | None:
    """The helper name when ``node`` is a ``__lazy_<name>(…)`` call with positional arguments."""
    if (
        isinstance(node.node, nodes.Name)
        and node.node.name.startswith(LAZY_PREFIX)
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        return node.node.name[len(LAZY_PREFIX) :]
    return None


class PebbleCodeGenerator(CodeGenerator):
    """Jinja's code generator; ``__lazy_*`` calls get one lambda thunk per argument."""

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:  # noqa: N802
        name = lazy_name(node)
        if name is None:
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        self.write(f"environment.pebble_lazy[{name!r}](")
        for index, arg in enumerate(node.args):
            if index:
                self.write(", ")
            self.write("(lambda: ")
            self.visit(arg, frame)
            self.write(")")
        self.write(")")
