"""Keep API keys and passwords out of everything the platform records.

`scrub` is the one function to call on a string before it is stored (DuckDB rows, log
excerpts, metadata): it masks the values of secret-named environment variables, and
anything shaped like a provider key, a bearer token or a password in a URL, whether or not
this process knows the value (a key from an agent config file, or one a provider echoes).
"""

import functools
import os
import re
from collections.abc import Mapping

SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS)", re.IGNORECASE)
MASK = "***"

# (pattern, replacement): each keeps what kind of secret it was and masks the secret itself.
SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:PASSWORD@host (redis://:pw@host too)
    (re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@"), rf"\1:{MASK}@"),
    # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), and every other sk- key
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), f"sk-{MASK}"),
    (re.compile(r"\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{8,}"), f"Bearer {MASK}"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), rf"\1{MASK}"),  # AWS access key ids
    (re.compile(r"\b(gh[pousr]_)[A-Za-z0-9]{20,}"), rf"\1{MASK}"),  # GitHub tokens
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), f"github_pat_{MASK}"),
    (re.compile(r"\b(xox[abposr]-)[A-Za-z0-9-]{8,}"), rf"\1{MASK}"),  # Slack tokens
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), f"AIza{MASK}"),  # Google API keys
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), f"hf_{MASK}"),  # Hugging Face tokens
    # api_key=…, "password": "…", x-api-key: …
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9]+[_-])*(?:api[_-]?key|access[_-]?token|auth[_-]?token|secret|"
            r"password|passwd)[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\s\"',;&]{6,}"
        ),
        rf"\1{MASK}",
    ),
)


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names say they are secrets, longest first.
    (Only those values are read: reading all of os.environ costs more than the scrub.)"""
    values = {environ[k] for k in environ if _secret_name(k)}
    return sorted((v for v in values if len(v) >= 6), key=len, reverse=True)


def scrub(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` fit to be stored: the values of secret-named variables of `environ` (default:
    this process's environment) and every secret-shaped token replaced by `***`."""
    for value in secret_values(os.environ if environ is None else environ):
        text = text.replace(value, MASK)
    for pattern, replacement in SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text
