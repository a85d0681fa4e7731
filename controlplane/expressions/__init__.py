"""Kestra expressions (``{{ inputs.x }}``, ``{{ outputs['t-1'].value }}``…) on sandboxed Jinja2.

Kestra's language is Pebble; where Jinja's defaults differ we follow Pebble's meaning
(conventions in DESIGN.md §6). Entry points: :func:`render` for one value (recursing into lists
and maps) and :func:`render_string` for one template string.
"""

from controlplane.expressions.engine import render, render_string

__all__ = ["render", "render_string"]
