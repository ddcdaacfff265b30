"""Keep API keys out of everything the platform records."""

import re
from collections.abc import Mapping

SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS)", re.IGNORECASE)


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names say they are secrets."""
    return sorted(
        {v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= 6},
        key=len,
        reverse=True,
    )


def scrub(text: str, environ: Mapping[str, str]) -> str:
    for value in secret_values(environ):
        text = text.replace(value, "***")
    return text
