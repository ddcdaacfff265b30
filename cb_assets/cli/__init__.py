"""`cb-assets`: the project's command line, a thin client of the code location.

`cb-assets materialize` is the main job: it registers the subset's pairs, then submits
runs of the code location in workspace.yaml — ranges of run_results partitions, then the
manifest and the report — to the local persistent Dagster instance (DAGSTER_HOME = the
project root, or `<CB_DATA_DIR>/dagster-home` when CB_DATA_DIR is set), and follows them
through its event log, a line per partition. A running Dagster daemon (`scripts/dev`)
launches them; without one, the command launches them itself through the instance's run
launcher. The runs carry the command's resource configuration as run config. Every run is
an ordinary run of the code location: the UI shows and re-executes it.
`cb-assets backfill` reruns exactly the partitions that failed or are missing.
`cb-assets import` brings in a run directory the upstream runner wrote elsewhere.
Every command works on one experiment of the registry (experiments.yaml): `--experiment`.
"""

import argparse
import sys

from cb_assets import config
from cb_assets.shared.settings import SETTING_NAMES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cb-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("materialize", help="run the experiment, then manifest and report")
    run.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="only the first N pairs of the subset (a smoke run); default: all",
    )
    run.add_argument(
        "--images",
        choices=("auto", "yes", "no"),
        default="auto",
        help="pull and probe the task images: auto (when a Docker engine answers; the "
        "default), yes (fail without one) or no",
    )
    run.add_argument(
        "--evals",
        action="store_true",
        help="also evaluate every pair-run (cooperbench eval, in the task images) and "
        "compute the coordination deficit",
    )

    again = commands.add_parser("backfill", help="rerun failed and/or missing partitions")
    again.add_argument(
        "--failed",
        action="store_true",
        help="partitions whose latest run failed (infra_error included)",
    )
    again.add_argument(
        "--missing", action="store_true", help="partitions never materialized (default: both kinds)"
    )
    again.add_argument(
        "--here",
        action="store_true",
        help="run them now and follow them here (through the daemon's queue when one runs, "
        "else launched by this command) "
        "instead of submitting a Dagster backfill",
    )
    again.add_argument("--dry-run", action="store_true", help="only list the partitions")
    for sub in (run, again):
        sub.add_argument(
            "--experiment",
            help="the experiment of experiments.yaml to run (default: CB_EXPERIMENT, else the "
            "registry's first)",
        )
        sub.add_argument(
            "--settings",
            "--setting",
            nargs="+",
            choices=SETTING_NAMES,
            help="only these of the experiment's settings (default: all of them)",
        )
        sub.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help="partitions materialized at once (default: 4)",
        )
    bring = commands.add_parser(
        "import", help="bring in a run directory written by the upstream runner (never rerun)"
    )
    bring.add_argument("run_dir", help="the upstream run folder: the one holding config.json")
    bring.add_argument(
        "--experiment",
        required=True,
        help="the experiment it belongs to (registered from its config.json when new)",
    )
    bring.add_argument("--setting", required=True, choices=SETTING_NAMES, help="its setting")
    bring.add_argument("--repeat", type=int, default=1, help="which repeat it is (default 1)")
    bring.add_argument(
        "--replace",
        action="store_true",
        help="replace pair folders imported earlier whose files differ (default: refuse)",
    )
    commands.add_parser(
        "upgrade", help="upgrade a data folder an earlier release wrote (in place, nothing lost)"
    )
    check = commands.add_parser(
        "selfcheck",
        help="run a small real experiment offline (engine, registry, image, model server, "
        "Redis started here) and check what its data says",
    )
    check.add_argument(
        "--seed", type=int, default=14, help="draws which conversation gets which fault"
    )
    check.add_argument(
        "--cache-dir",
        help="where the Debian root filesystem is kept between runs (default: CB_BOTTLE_CACHE,"
        " else /var/cache/cb-assets as root, ~/.cache/cb-assets otherwise)",
    )
    ask = commands.add_parser("sql", help="query the DuckDB file, safely while runs write")
    ask.add_argument("query", help='SQL, e.g. "select * from pass_rate_by_setting"')
    ask.add_argument("--csv", action="store_true", help="CSV instead of a table")
    args = parser.parse_args(argv)
    if args.command in ("materialize", "backfill") and not _preflight(args.experiment):
        sys.exit(2)
    try:
        code = _command(args.command)(args)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _preflight(experiment: str | None) -> bool:
    """The configuration checked before anything starts: a line per problem; False if any."""
    from cb_assets.defs.runs.preflight import problems

    found = problems(experiment)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return not found


def _command(name: str):
    if name == "materialize":
        from cb_assets.cli.materialize import materialize

        return materialize
    if name == "backfill":
        from cb_assets.cli.backfill import backfill

        return backfill
    if name == "upgrade":
        from cb_assets.cli.upgrade import upgrade

        return upgrade
    if name == "selfcheck":
        from cb_assets.cli.selfcheck import selfcheck

        return selfcheck
    if name == "import":
        from cb_assets.cli.import_run import import_run

        return import_run
    from cb_assets.cli.sql import sql

    return sql
