"""The fingerprint of the code a forked child would run.

A client sends it with every request; a server whose own differs (started before the code
changed) answers "stale" and retires, so no run executes old code.
"""

import hashlib
from pathlib import Path


def fingerprint() -> str:
    """Changes whenever the code a child would run changes, so a stale server retires: every
    module of this package and of cb_assets.agents, and cooperbench's version."""
    digest = hashlib.sha256()
    package_dir = Path(__file__).resolve().parent
    agents_dir = package_dir.parent.parent / "agents"
    for path in sorted(agents_dir.glob("*.py")) + sorted(package_dir.glob("*.py")):
        digest.update(path.read_bytes())
    from importlib.metadata import version

    digest.update(version("cooperbench").encode())
    return digest.hexdigest()[:16]
