"""Kestra expressions (``{{ inputs.x }}``, ``{{ outputs['t-1'].value ?? 'none' }}``…).

Kestra's language is Pebble; we run it on Jinja2's immutable sandboxed environment and give
it Pebble's meaning where Jinja's differs (DESIGN.md §6). Entry points: :func:`render` for one
value (recursing into lists and maps) and :func:`render_string` for one template string; both
raise :class:`controlplane.errors.ExpressionError` naming the template and where it was.
:func:`register_function` plugs in functions backed by services (``secret``, ``kv``, ``read``,
``errorLogs``… are stubs raising "not available yet" until then); :func:`current_context` gives
such functions the variables of the render in progress.

Modules: ``preprocess`` (Pebble syntax to Jinja source), ``compiler`` (lazy operands),
``engine`` (environment and rendering), ``operators``, ``filters``, ``functions``, ``tests``,
``lazy`` (``??``, ``???``, ``is defined``, ``default``), ``dates`` (Java date patterns), ``jq``,
``values`` (Java meaning of values), ``calls`` (how templates call Python), ``limits`` and
``state`` (sandbox limits, render context).

Known differences from Kestra, by choice or for lack of a library (each raises a clear error
rather than guessing, unless stated):

- Not available: ``toIon``/``fromIon`` (no Ion library), the ``include``/``extends``/``import``/
  ``from``/``embed`` tags (flows have no template files), ``block()``/``parent()``/``i18n()``,
  Java method calls on values (``'abc'.length()``), locales other than English in dates.
- Lenient where Pebble errors: non-boolean conditions use Kestra's truthiness (``""``,
  ``"false"``, ``"0"``, null, 0 and empty collections are false); a ``{% set %}`` inside a loop
  stays visible after it; macros see the template's variables.
- The system time zone is UTC; ``zzzz`` prints the short zone name; ``yaml`` quotes with single
  quotes where Jackson uses double quotes; ``jq`` runs the C jq (Kestra: jackson-jq 1.6);
  floats are doubles (a ``number`` result reports ``java.lang.Float`` but computes in double).
"""

from controlplane.expressions.engine import current_context, register_function, render, render_string
from controlplane.expressions.errors import EvaluationError

__all__ = ["EvaluationError", "current_context", "register_function", "render", "render_string"]
