"""`python -m sgl.runtime.models` prints the supported-architecture table (docs/models.md)."""

from . import markdown_table

print(markdown_table(), end="")
