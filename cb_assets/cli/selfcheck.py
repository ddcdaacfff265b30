"""`cb-assets selfcheck`: a real experiment in a bottle (see `cb_assets.bottle.selfcheck`)."""

import argparse
from pathlib import Path

from cb_assets import config


def selfcheck(args: argparse.Namespace) -> int:
    from cb_assets.bottle import selfcheck as bottle

    cache = Path(args.cache_dir) if args.cache_dir else config.bottle_cache_dir()
    return bottle.run(config.data_dir(), cache, seed=args.seed)
