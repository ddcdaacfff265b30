"""`python -m cb_assets.run_launcher --socket … --parent …`: be a warm run-worker process."""

import argparse
from pathlib import Path

from cb_assets.run_launcher.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="fork Dagster run workers from a warm process")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()
    serve(args.socket, args.parent)


if __name__ == "__main__":
    main()
