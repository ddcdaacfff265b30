"""Helpers built on textkit.core."""

from textkit.core import reverse


def mirror(text: str) -> str:
    """Return text followed by its reverse."""
    return text + reverse(text)
