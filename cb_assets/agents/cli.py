"""`python -m cb_assets.agents.cli run ...`: the upstream `cooperbench` CLI with our agents
(`oracle`, `noop`, `flaky`, `replay`: `... run -a replay --agent-config replay.yaml`).

Registering happens on import of `offline`; everything after is upstream's own
entry point, so the logs on disk are exactly what `cooperbench run` writes. The
Redis URL comes through the environment (`CB_REDIS_URL`, set by the runner) and is
added to the in-process arguments only, so no password shows in /proc/<pid>/cmdline.
"""

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run upstream's CLI on `argv` (default: this process's arguments)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from cooperbench.cli import main as cooperbench_main

    import cb_assets.agents.offline  # noqa: F401  (registers oracle, noop, flaky, replay)
    from cb_assets.config import redis_url_if_set
    from cb_assets.runner.command import upstream_argv

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["cooperbench", *upstream_argv(args, redis_url_if_set())]
    cooperbench_main()


if __name__ == "__main__":
    main()
