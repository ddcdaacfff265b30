"""`python -m cb_assets.agents.cli run ...`: the upstream `cooperbench` CLI with our agents.

Registering happens on import of `offline`; everything after is upstream's own
entry point, so the logs on disk are exactly what `cooperbench run` writes.
"""

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from cooperbench.cli import main as cooperbench_main

    import cb_assets.agents.offline  # noqa: F401  (registers oracle and noop)

    if argv is not None:
        sys.argv = ["cooperbench", *argv]
    cooperbench_main()


if __name__ == "__main__":
    main()
