"""What an offline agent reads from the log folder upstream hands it."""

import re
from pathlib import Path

_FEATURES_DIR = re.compile(r"^f(\d+)_f(\d+)$")


def pair_from_log_dir(log_dir: str | None) -> tuple[str, int, list[int]]:
    """Upstream passes `<logs>/<run>/<setting>/<repo>/<task_id>/f<a>_f<b>` to every agent."""
    if not log_dir:
        raise RuntimeError("oracle needs upstream's log_dir to know its task")
    path = Path(log_dir)
    match = _FEATURES_DIR.match(path.name)
    if not match:
        raise RuntimeError(f"oracle cannot read the feature pair from log_dir {log_dir}")
    return path.parent.parent.name, int(path.parent.name), sorted(int(f) for f in match.groups())
