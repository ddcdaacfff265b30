"""`python -m cb_assets.runner.forkserver --socket … --logs-root …`: be a fork server.

start_server runs this with the start lock as an inherited descriptor; serve() pays
cooperbench's import once, here, so every forked child starts with it done, and releases the
lock only once the server listens.
"""

import argparse
import gc
import os
from pathlib import Path

import cb_assets.runner.forkserver as forkserver
from cb_assets.runner.forkserver.code_fingerprint import fingerprint
from cb_assets.runner.forkserver.private import ensure_private_dir
from cb_assets.runner.forkserver.protocol import LOCK_FD_ENV
from cb_assets.runner.forkserver.server import Server, log


def serve(socket_path: Path, logs_root: Path) -> None:
    """Be the fork server for runs writing under `logs_root`, listening at `socket_path`."""
    import cooperbench.cli  # noqa: F401  (the expensive import, paid once here)
    import cooperbench.runner.core  # noqa: F401

    import cb_assets.agents.cli  # noqa: F401
    import cb_assets.agents.offline  # noqa: F401
    import cb_assets.config  # noqa: F401  (what the wrapped CLI imports when it runs)
    import cb_assets.runner.command  # noqa: F401

    _warm_up()
    ensure_private_dir(socket_path.parent)
    server = Server(socket_path, os.path.abspath(logs_root), fingerprint())
    # Everything imported so far is shared with the children copy-on-write; frozen, the
    # collector never touches (and so never copies) it in a child: forks get cheaper.
    gc.collect()
    gc.freeze()
    if os.environ.get(LOCK_FD_ENV):
        os.close(int(os.environ.pop(LOCK_FD_ENV)))  # listening: release the start lock
    log(f"listening on {socket_path} for runs under {server.root}")
    server.run()


def _warm_up() -> None:
    """Pay once, here, what every child would pay on its first print: upstream reports
    through rich, whose markup and emoji tables load (and regexes compile) on first use."""
    import io

    from rich.console import Console

    Console(file=io.StringIO(), force_terminal=True).print("[bold]cb_assets[/bold] :rocket:")


def main() -> None:
    parser = argparse.ArgumentParser(description=forkserver.__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--logs-root", type=Path, required=True)
    args = parser.parse_args()
    serve(args.socket, args.logs_root)


if __name__ == "__main__":
    main()
