"""The basic string helpers."""


def reverse(text: str) -> str:
    """Return the characters of text in reverse order."""
    return text[::-1]


def shout(text: str) -> str:
    """Return text in upper case with a trailing exclamation mark."""
    return text.upper() + "!"
