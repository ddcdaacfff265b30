"""Which code a warm process runs: every module of the cb_assets package."""

import hashlib
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def code_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
