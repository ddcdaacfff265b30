"""The verification report of one experiment: which promises hold, computed from what is
recorded.

Every verdict comes from the data handed in here; a promise the platform has no data for
yet is NOT CHECKED with the reason, never VERIFIED. A promise that does not apply to the
experiment (the completeness of a setting it does not run, messaging in a solo-only
experiment) yields no truth at all: `truth_keys(settings)` names the ones that apply.

Completeness counts pair-runs, (pair, repeat), in each of the experiment's settings: a
pair-run is done when its result file is intact and it ended in a result, whatever the
agents' statuses (Submitted, LimitsExceeded, Error: an agent failing on its own merits is
a result). Only the platform's `infra_error` and `config_error` are not results. Every
setting is expected at every repeat of the experiment (the registry has one `repeats`),
so a setting run at fewer repeats is incomplete, and the evidence says which repeats lack.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.shared.failures import CONFIG_ERROR, INFRA_ERROR, MAX_ATTEMPTS
from cb_assets.shared.partition_keys import Arm, partition_key
from cb_assets.shared.settings import SETTING_NAMES, SETTINGS

VERIFIED, FAILED, NOT_CHECKED = "VERIFIED", "FAILED", "NOT CHECKED"
SMOKE_PAIRS = 5
DEFAULT_COST_BAND = (0.0, 20.0)  # plausible dollars per agent of one pair-run
NOT_RESULTS = (INFRA_ERROR, CONFIG_ERROR)  # the classifications that are not a result
SAMPLE = 5  # outliers named in an evidence line before "and N more"


@dataclass(frozen=True)
class Truth:
    key: str
    truth: str
    verdict: str
    evidence: str


@dataclass(kw_only=True)
class ReportInputs:
    """What the report of one experiment is computed from.

    `results`, `attempts` and `evals` hold that experiment's rows only (run_results,
    run_attempts, eval_results). `results` carry one extra boolean column, `file_ok`: the
    result.json the row came from is still on disk and still holds that run.
    `settings` and `repeats` are the experiment's own, from the registry; `expected_pairs`
    the dataset's pair keys. `result_file_costs` holds the `total_cost` of each pair-run's
    result file (keyed by its partition key; only the sum is used).
    """

    phase: str
    subset: str
    experiment: str
    settings: tuple[str, ...]
    repeats: int
    expected_pairs: list[str]
    results: pd.DataFrame
    manifest: dict[str, Any] | None
    agent: str | None = None
    model: str | None = None
    cost_band: tuple[float, float] = DEFAULT_COST_BAND
    result_file_costs: dict[str, float] = field(default_factory=dict)
    images: pd.DataFrame | None = None
    attempts: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    artifacts: list[tuple[str, str, bool]] = field(default_factory=list)


def _sample(keys: list[str], limit: int = SAMPLE) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _setting_key(setting: str) -> str:
    return f"{setting.replace('-', '_')}_complete"  # truth keys double as asset check names


SPOT_CHECK_KEYS = (
    "cost_in_band",
    "counts_non_negative",
    "timestamps_valid",
    "features_match_folder",
    "messaging_flags",
)
# Every truth any experiment can have, in report order; an experiment has those
# `truth_keys(its settings)` names.
TRUTH_KEYS = (
    "dataset_loaded",
    "images_present",
    "smoke_run",
    *(_setting_key(s) for s in SETTING_NAMES),
    "messaging_recorded",
    "infra_retried",
    "cost_tracked",
    "evals_complete",
    *SPOT_CHECK_KEYS,
)


def _has_coop(settings: Iterable[str]) -> bool:
    return any(SETTINGS[s].is_coop for s in settings if s in SETTINGS)


def truth_keys(settings: Iterable[str]) -> tuple[str, ...]:
    """The truths evaluated for an experiment run in `settings`, in TRUTH_KEYS order."""
    settings = tuple(settings)
    skipped = {_setting_key(s) for s in SETTING_NAMES if s not in settings}
    if not _has_coop(settings):
        skipped.add("messaging_recorded")
    return tuple(k for k in TRUTH_KEYS if k not in skipped)


def _arm_key(inputs: ReportInputs, setting: str, repeat: int) -> str:
    return Arm(inputs.experiment, setting, repeat).key


def _run_label(row: Any) -> str:
    """A pair-run as its partition key (`<arm>|<pair>`)."""
    return partition_key(str(row.arm), str(row.pair))


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{k} {n}" for k, n in values.astype(str).value_counts().items()) or "none"


def _file_ok(rows: pd.DataFrame) -> pd.Series:
    return rows["file_ok"].fillna(False).astype(bool)


def _is_result(rows: pd.DataFrame) -> pd.Series:
    """Rows of a pair-run that ended in a result (NULL classification: an ingested row)."""
    return ~rows["classification"].isin(NOT_RESULTS).fillna(False).astype(bool)


def _done_runs(results: pd.DataFrame, setting: str) -> set[tuple[str, int]]:
    """(pair, repeat) of `setting` whose result file is intact and that ended in a result."""
    rows = results[results["setting"] == setting]
    if rows.empty:
        return set()
    ok = (_file_ok(rows) & _is_result(rows)).groupby([rows["pair"], rows["repeat"]]).all()
    return {(str(p), int(r)) for (p, r), good in ok.items() if good}


def _setting_truth(inputs: ReportInputs, setting: str) -> Truth:
    key, repeats = _setting_key(setting), inputs.repeats
    expected = inputs.expected_pairs
    truth = (
        f"{setting} is complete on the {inputs.subset} subset"
        + (f", all {repeats} repeats" if repeats > 1 else "")
        + ": every pair-run ended in a result"
    )
    if not expected:
        return Truth(key, truth, NOT_CHECKED, "no pairs loaded: run benchmark_pairs")
    wanted = set(expected)
    rows = inputs.results[inputs.results["setting"] == setting]
    in_scope = (rows["pair"].isin(wanted) & rows["repeat"].between(1, repeats)).fillna(False)
    in_scope = in_scope.astype(bool)
    done = _done_runs(rows[in_scope], setting)
    missing = [
        partition_key(_arm_key(inputs, setting, r), p)
        for r in range(1, repeats + 1)
        for p in expected
        if (p, r) not in done
    ]
    parts = [
        f"{len(done)}/{len(expected) * repeats} pair-runs"
        + (f" ({len(expected)} pairs × {repeats} repeats)" if repeats > 1 else "")
        + f" with a final result on disk; agent statuses: {_counts(rows.loc[in_scope, 'status'])}"
    ]
    if repeats > 1:
        per_repeat = [
            f"r{r} {sum(1 for _, k in done if k == r)}/{len(expected)}"
            for r in range(1, repeats + 1)
        ]
        parts.append("per repeat: " + ", ".join(per_repeat))
    scoped = rows[in_scope]
    not_results = scoped[~_is_result(scoped)].drop_duplicates(["pair", "repeat"])
    if not not_results.empty:
        parts.append(
            f"{len(not_results)} pair-runs ended in "
            f"{_counts(not_results['classification'])} (not results)"
        )
    flagged = sorted({_run_label(r) for r in rows[~in_scope].itertuples()})
    if flagged:
        parts.append(
            f"flagged, not counted (pair not in the {inputs.subset} pairs or repeat beyond "
            f"{repeats}): {_sample(flagged)}"
        )
    if missing:
        parts.append(f"missing or broken: {_sample(missing)}")
        return Truth(key, truth, FAILED, "; ".join(parts))
    return Truth(key, truth, VERIFIED, "; ".join(parts))


def _smoke_truth(inputs: ReportInputs) -> Truth:
    settings = ", ".join(inputs.settings)
    # a subset smaller than a smoke run (the self-check's 3 pairs) is smoked whole
    needed = min(SMOKE_PAIRS, len(inputs.expected_pairs)) or SMOKE_PAIRS
    truth = f"a smoke run of {needed} pairs went end to end in every setting ({settings})"
    if not inputs.settings:
        return Truth("smoke_run", truth, NOT_CHECKED, "the experiment names no setting")
    per_setting = [{p for p, _ in _done_runs(inputs.results, s)} for s in inputs.settings]
    complete = set.intersection(*per_setting)
    evidence = f"{len(complete)} pairs have final results in {settings}"
    verdict = VERIFIED if len(complete) >= needed else FAILED
    return Truth("smoke_run", truth, verdict, evidence)


def _dataset_truth(inputs: ReportInputs) -> Truth:
    truth = f"the {inputs.subset} subset is loaded as feature pairs"
    n = len(inputs.expected_pairs)
    tasks = len({p.rsplit("-", 1)[0] for p in inputs.expected_pairs})
    if n == 0:
        return Truth("dataset_loaded", truth, FAILED, "benchmark_pairs holds no pairs")
    return Truth("dataset_loaded", truth, VERIFIED, f"{n} pairs over {tasks} tasks")


def _images_truth(inputs: ReportInputs) -> Truth:
    truth = "every task image of the subset is present and its /workspace probe passes"
    if inputs.images is None or inputs.images.empty:
        return Truth(
            "images_present",
            truth,
            NOT_CHECKED,
            "no task_images recorded yet: materialize task_images",
        )
    tasks = sorted({p.rsplit("-", 1)[0] for p in inputs.expected_pairs})
    images = inputs.images.set_index("task")
    present = [t for t in tasks if t in images.index and bool(images.at[t, "present"])]
    probed = [t for t in present if bool(images.at[t, "probe_ok"])]
    evidence = (
        f"{len(present)}/{len(tasks)} images present, "
        f"{len(probed)}/{len(tasks)} /workspace probes passed"
    )
    missing = [t for t in tasks if t not in probed]
    if missing:
        return Truth("images_present", truth, FAILED, f"{evidence}; not ready: {_sample(missing)}")
    return Truth("images_present", truth, VERIFIED, evidence)


def _messaging_truth(inputs: ReportInputs) -> Truth:
    """Over the experiment's coop settings: those with messaging exchanged messages, those
    without sent none (counted once per pair-run: messages_sent is the pair-run's)."""
    coop = [s for s in inputs.settings if s in SETTINGS and SETTINGS[s].is_coop]
    truth = "runs with messaging on exchange messages; runs with it off send none"
    r = inputs.results
    parts, wrong, empty = [], [], []
    for setting in coop:
        rows = r[r["setting"] == setting]
        if rows.empty:
            empty.append(setting)
            continue
        runs = rows.drop_duplicates(["pair", "repeat"])
        msgs = int(runs["messages_sent"].fillna(0).sum())
        on = SETTINGS[setting].messaging
        state = "on" if on else "off"
        parts.append(f"{setting} (messaging {state}): {msgs} messages over {len(runs)} pair-runs")
        if (on and msgs == 0) or (not on and msgs > 0):
            wrong.append(setting)
    if empty:
        parts.append(f"no results yet in {', '.join(empty)}")
    evidence = "; ".join(parts)
    if wrong:
        return Truth(
            "messaging_recorded", truth, FAILED, f"{evidence}; wrong in {', '.join(wrong)}"
        )
    if empty:
        return Truth("messaging_recorded", truth, NOT_CHECKED, evidence)
    return Truth("messaging_recorded", truth, VERIFIED, evidence)


def _retries_truth(inputs: ReportInputs) -> Truth:
    """Every non-final infra_error attempt was followed by another attempt in the same run,
    and every final one came after MAX_ATTEMPTS attempts in its run."""
    truth = "infrastructure failures are retried and tagged infra_error when they persist"
    attempts = inputs.attempts
    if attempts is None or attempts.empty:
        return Truth("infra_retried", truth, NOT_CHECKED, "no run_attempts recorded yet")
    infra = attempts[attempts["classification"] == INFRA_ERROR]
    if infra.empty:
        return Truth(
            "infra_retried",
            truth,
            NOT_CHECKED,
            f"no infrastructure failure among {len(attempts)} attempts: nothing to check",
        )
    per_run = attempts.groupby(["partition", "dagster_run_id"])
    unretried, short = [], []
    recovered = gave_up = 0
    for (partition, _), group in per_run:
        group = group.sort_values("attempt")
        for i, row in enumerate(group.itertuples()):
            if row.classification != INFRA_ERROR:
                continue
            if row.final:
                gave_up += 1
                if len(group) < MAX_ATTEMPTS:
                    short.append(partition)
            elif i == len(group) - 1:
                unretried.append(partition)
        if (
            group.iloc[-1]["classification"] != INFRA_ERROR
            and (group["classification"] == INFRA_ERROR).any()
        ):
            recovered += 1
    evidence = (
        f"{len(infra)} infra_error attempts over {infra['partition'].nunique()} "
        f"partitions: {recovered} recovered on a retry, {gave_up} gave up after "
        f"{MAX_ATTEMPTS} attempts tagged infra_error"
    )
    if unretried or short:
        return Truth(
            "infra_retried",
            truth,
            FAILED,
            f"{evidence}; not retried: "
            f"{_sample(unretried) or 'none'}; gave up early: {_sample(short) or 'none'}",
        )
    return Truth("infra_retried", truth, VERIFIED, evidence)


def final_results_cost(totals: dict[str, Any]) -> float:
    """The final results' cost from manifest totals (manifests written before the split
    of `cost_total` held it under that name)."""
    return float(totals.get("cost_final_results", totals["cost_total"]))


def _cost_truth(inputs: ReportInputs) -> Truth:
    truth = "the cost of every run is tracked and the manifest totals match the result files"
    r = inputs.results
    if r.empty or inputs.manifest is None:
        return Truth("cost_tracked", truth, NOT_CHECKED, "no results or no manifest yet")
    untracked = r[r["cost"].isna()]
    on_disk = round(sum(inputs.result_file_costs.values()), 6)
    totals = inputs.manifest["totals"]
    in_manifest = final_results_cost(totals)
    evidence = (
        f"{len(r) - len(untracked)}/{len(r)} agent rows carry a cost; final results "
        f"${in_manifest:.4f} in the manifest, ${on_disk:.4f} in the result files; "
        f"spent in all, every attempt included, ${float(totals['cost_total']):.4f}"
    )
    ok = untracked.empty and abs(on_disk - in_manifest) < 1e-6
    return Truth("cost_tracked", truth, VERIFIED if ok else FAILED, evidence)


def _evals_truth(inputs: ReportInputs) -> Truth:
    truth = "merge and test outcomes are available for every pair-run"
    if inputs.evals is None or inputs.evals.empty:
        return Truth(
            "evals_complete", truth, NOT_CHECKED, "no eval_results yet: materialize eval_results"
        )
    expected = {
        partition_key(_arm_key(inputs, s, r), p)
        for s in inputs.settings
        for r in range(1, inputs.repeats + 1)
        for p in inputs.expected_pairs
    }
    evals = inputs.evals
    keys = partition_key(evals["arm"].astype(str), evals["pair"].astype(str))
    done = set(keys[evals["outcome"] != "error"])
    counts = evals["outcome"].value_counts()
    evidence = (
        f"{len(done & expected)}/{len(expected)} pair-runs evaluated: "
        f"{counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
        f"{counts.get('error', 0)} errors; merges: {_counts(evals['merge_status'])}"
    )
    missing = sorted(expected - done)
    if missing:
        return Truth("evals_complete", truth, FAILED, f"{evidence}; missing: {_sample(missing)}")
    return Truth("evals_complete", truth, VERIFIED, evidence)


# Spot checks: each looks at every row (or pair-run) and names the outliers.


def _spot_truth(key: str, truth: str, checked: int, what: str, outliers: list[str]) -> Truth:
    if checked == 0:
        return Truth(key, truth, NOT_CHECKED, f"no {what} recorded yet")
    evidence = f"{checked - len(outliers)}/{checked} {what} pass"
    if outliers:
        return Truth(key, truth, FAILED, f"{evidence}; outliers: {_sample(outliers)}")
    return Truth(key, truth, VERIFIED, evidence)


def _pair_runs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per pair-run (the fields a result file holds once)."""
    return results.drop_duplicates(["arm", "pair"])


def _cost_band_truth(inputs: ReportInputs) -> Truth:
    low, high = inputs.cost_band
    truth = f"every agent's cost is plausible: between ${low:.2f} and ${high:.2f}"
    r = inputs.results[inputs.results["cost"].notna()]
    cost = r["cost"].astype(float)
    out = r[(cost < low) | (cost > high)]
    outliers = [f"{_run_label(x)} {x.agent_id} ${float(x.cost):.2f}" for x in out.itertuples()]
    result = _spot_truth("cost_in_band", truth, len(r), "agent costs", outliers)
    if not r.empty:
        spread = f" (median ${cost.median():.2f}, max ${cost.max():.2f})"
        head, sep, tail = result.evidence.partition(";")
        result = Truth(result.key, truth, result.verdict, head + spread + sep + tail)
    return result


def _counts_truth(inputs: ReportInputs) -> Truth:
    truth = "every agent's steps and patch_lines are non-negative"
    r = inputs.results
    outliers = [
        f"{_run_label(x)} {x.agent_id} {name} {int(value)}"
        for x in r.itertuples()
        for name in ("steps", "patch_lines")
        if not pd.isna(value := getattr(x, name)) and value < 0
    ]
    return _spot_truth("counts_non_negative", truth, len(r), "agent rows", outliers)


def _timestamp(value: Any) -> datetime | None:
    """An ISO timestamp (naive ones are UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _timestamps_truth(inputs: ReportInputs) -> Truth:
    truth = "every pair-run's started_at and ended_at are ISO timestamps, ended_at ≥ started_at"
    runs = _pair_runs(inputs.results)
    outliers = []
    for x in runs.itertuples():
        start, end = _timestamp(x.started_at), _timestamp(x.ended_at)
        if start is None or end is None:
            bad = x.started_at if start is None else x.ended_at
            outliers.append(f"{_run_label(x)} unparsable {None if pd.isna(bad) else bad!r}")
        elif end < start:
            outliers.append(f"{_run_label(x)} ended_at {x.ended_at} < started_at {x.started_at}")
    return _spot_truth("timestamps_valid", truth, len(runs), "pair-runs", outliers)


_FEATURES_DIR = re.compile(r"f(\d+)_f(\d+)")


def _folder_problem(row: Any) -> str | None:
    """What disagrees between a row's result_path folders and its repo/task/features."""
    if pd.isna(row.result_path):
        return "no result_path"
    pair_dir = Path(str(row.result_path)).parent
    match = _FEATURES_DIR.fullmatch(pair_dir.name)
    wanted = sorted((row.feature_a, row.feature_b))
    if not match or sorted(map(int, match.groups())) != wanted:
        return f"folder {pair_dir.name} but features f{wanted[0]}_f{wanted[1]}"
    if pair_dir.parent.name != str(row.task_id) or pair_dir.parent.parent.name != row.repo:
        return (
            f"folder {pair_dir.parent.parent.name}/{pair_dir.parent.name} "
            f"but {row.repo}/{row.task_id}"
        )
    if row.pair != f"{row.repo}-{row.task_id}-f{wanted[0]}_f{wanted[1]}":
        return f"pair key {row.pair} but {row.repo}/{row.task_id}/f{wanted[0]}_f{wanted[1]}"
    return None


def _features_truth(inputs: ReportInputs) -> Truth:
    truth = "every result sits in the folder of its own repo, task and features"
    runs = _pair_runs(inputs.results)
    outliers = [
        f"{_run_label(x)} {problem}" for x in runs.itertuples() if (problem := _folder_problem(x))
    ]
    return _spot_truth("features_match_folder", truth, len(runs), "pair-runs", outliers)


def _messaging_flags_truth(inputs: ReportInputs) -> Truth:
    truth = (
        "messaging flags match the setting: no messages where messaging is off, "
        "messaging_enabled where it is on"
    )
    outliers = []
    for x in inputs.results.itertuples():
        setting = SETTINGS.get(str(x.setting))
        enabled = None if pd.isna(x.messaging_enabled) else bool(x.messaging_enabled)
        sent = 0 if pd.isna(x.messages_sent) else int(x.messages_sent)
        if setting is None:
            outliers.append(f"{_run_label(x)} {x.agent_id} unknown setting {x.setting!r}")
        elif setting.messaging and enabled is not True:
            outliers.append(f"{_run_label(x)} {x.agent_id} messaging_enabled {enabled}")
        elif not setting.messaging and (sent != 0 or enabled):
            outliers.append(
                f"{_run_label(x)} {x.agent_id} messaging off but "
                + (f"{sent} messages sent" if sent else "messaging_enabled")
            )
    return _spot_truth("messaging_flags", truth, len(inputs.results), "agent rows", outliers)


def evaluate_truths(inputs: ReportInputs) -> list[Truth]:
    """The experiment's truths, in TRUTH_KEYS order; those `truth_keys(inputs.settings)`
    leaves out (settings the experiment does not run) are not evaluated."""
    truths = {
        "dataset_loaded": lambda: _dataset_truth(inputs),
        "images_present": lambda: _images_truth(inputs),
        "smoke_run": lambda: _smoke_truth(inputs),
        **{_setting_key(s): (lambda s=s: _setting_truth(inputs, s)) for s in SETTING_NAMES},
        "messaging_recorded": lambda: _messaging_truth(inputs),
        "infra_retried": lambda: _retries_truth(inputs),
        "cost_tracked": lambda: _cost_truth(inputs),
        "evals_complete": lambda: _evals_truth(inputs),
        "cost_in_band": lambda: _cost_band_truth(inputs),
        "counts_non_negative": lambda: _counts_truth(inputs),
        "timestamps_valid": lambda: _timestamps_truth(inputs),
        "features_match_folder": lambda: _features_truth(inputs),
        "messaging_flags": lambda: _messaging_flags_truth(inputs),
    }
    return [truths[key]() for key in truth_keys(inputs.settings)]


def _requirements(inputs: ReportInputs) -> list[tuple[str, list[str]]]:
    settings = " / ".join(inputs.settings) or "no setting"
    return [
        ("Images of the subset present", ["images_present"]),
        (f"Smoke run of {SMOKE_PAIRS} pairs end to end", ["smoke_run"]),
        (
            f"{settings} complete on the subset"
            + (f", {inputs.repeats} repeats" if inputs.repeats > 1 else ""),
            [_setting_key(s) for s in inputs.settings] + ["messaging_recorded"],
        ),
        ("Infrastructure failures retried and tagged", ["infra_retried"]),
        ("Cost tracked per run", ["cost_tracked"]),
        ("Merge and test outcomes for every pair-run", ["evals_complete"]),
        ("Spot checks of every result pass", list(SPOT_CHECK_KEYS)),
    ]


# The report's figures, linked relative to the report (figures.py writes them).
FIGURE_DIR = "figures"
FIGURES = [
    ("cost per setting", "cost_per_setting.png"),
    ("status mix per setting", "status_mix.png"),
    ("pass rate per setting", "pass_rate.png"),
]
COST_LINES = [
    ("cost_total", "Total spent, every attempt (`cost_total`)"),
    ("cost_final_results", "Final results (`cost_final_results`)"),
    ("failed_attempts_cost", "Failed attempts, infra_error (`failed_attempts_cost`)"),
    (
        "cost_other_attempts",
        "Other attempts: replaced results, config errors (`cost_other_attempts`)",
    ),
]


def _overall(verdicts: list[str]) -> str:
    if all(v == VERIFIED for v in verdicts):
        return "SATISFIED"
    if any(v == FAILED for v in verdicts):
        return "BLOCKED"
    return "NOT CHECKED"


def render_report(inputs: ReportInputs, truths: list[Truth], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    verified = sum(t.verdict == VERIFIED for t in truths)
    status = (
        "passed"
        if verified == len(truths)
        else ("gaps_found" if any(t.verdict == FAILED for t in truths) else "human_needed")
    )
    by_key = {t.key: t for t in truths}
    numbers = {t.key: i for i, t in enumerate(truths, 1)}
    settings = ", ".join(inputs.settings)
    who = " / ".join(x for x in (inputs.agent, inputs.model) if x)
    lines = [
        "---",
        f"phase: {inputs.phase}",
        f"experiment: {inputs.experiment}",
        *([f"agent: {inputs.agent}"] if inputs.agent else []),
        *([f"model: {inputs.model}"] if inputs.model else []),
        f"settings: {settings}",
        f"repeats: {inputs.repeats}",
        f"verified: {now.isoformat(timespec='seconds')}",
        f"status: {status}",
        f"score: {verified}/{len(truths)} truths verified",
        "---",
        "",
        f"# Verification report: {inputs.experiment}" + (f" ({who})" if who else ""),
        "",
        f"Experiment `{inputs.experiment}` on the {inputs.subset} subset: settings {settings}, "
        f"{inputs.repeats} repeat{'s' if inputs.repeats != 1 else ''}.",
        "",
        "## Observable Truths",
        "",
        "| # | Truth | Status | Evidence |",
        "|---|-------|--------|----------|",
    ]
    for i, t in enumerate(truths, 1):
        evidence = t.evidence.replace("|", "\\|")  # partition keys hold `|`: escaped
        lines.append(f"| {i} | {t.truth} | {t.verdict} | {evidence} |")
    lines += ["", "## Required Artifacts", "", "| Artifact | Path | Status |", "|---|---|---|"]
    for name, path, exists in inputs.artifacts:
        lines.append(f"| {name} | `{path}` | {'EXISTS' if exists else 'MISSING'} |")
    lines += [
        "",
        "## Requirements Coverage",
        "",
        "| Requirement | Truths | Status |",
        "|---|---|---|",
    ]
    for requirement, keys in _requirements(inputs):
        keys = [k for k in keys if k in by_key]
        if not keys:
            continue
        verdicts = [by_key[k].verdict for k in keys]
        listed = ", ".join(str(numbers[k]) for k in keys)
        lines.append(f"| {requirement} | {listed} | {_overall(verdicts)} |")
    lines += ["", "## Cost", ""]
    if inputs.manifest is None:
        lines.append("No manifest yet: materialize cost_manifest.")
    else:
        totals = inputs.manifest["totals"]
        lines += ["| Cost | USD |", "|---|---|"]
        lines += [
            f"| {label} | {float(totals.get(key, 0.0)):.4f} |"
            for key, label in COST_LINES
            if key in totals
        ]
    lines += ["", "## Figures", ""]
    lines += [f"![{alt}]({FIGURE_DIR}/{name})" for alt, name in FIGURES[:2]]
    if inputs.evals is not None and not inputs.evals.empty:
        alt, name = FIGURES[2]
        lines.append(f"![{alt}]({FIGURE_DIR}/{name})")
    gaps = [t for t in truths if t.verdict != VERIFIED]
    lines += [
        "",
        "## Summary",
        "",
        f"{verified} of {len(truths)} truths verified from the data on disk and in DuckDB.",
    ]
    if gaps:
        lines += ["", "Open:"]
        lines += [f"- {t.verdict}: {t.truth} — {t.evidence}" for t in gaps]
    return "\n".join(lines) + "\n"


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def ui_markdown(markdown: str, base_dir: Path) -> str:
    """The report as Dagster's UI should render it. The front matter becomes a table
    (as markdown its lines run into one heading), and each image linked relative to the
    report is inlined as a `data:` URI (the UI resolves a relative link against its own
    address, where it is a broken image). The file on disk keeps both as they are."""
    from cb_assets.defs.reports.figures import data_uri

    lines = markdown.split("\n")
    if lines and lines[0] == "---" and "---" in lines[1:]:
        end = lines.index("---", 1)
        fields = [line.partition(":") for line in lines[1:end]]
        table = ["| Field | Value |", "|---|---|"]
        table += [
            f"| {key.strip()} | {value.strip().replace('|', '/')} |" for key, _, value in fields
        ]
        lines = table + lines[end + 1 :]

    def inline(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if "://" in target or target.startswith("data:"):
            return match.group(0)
        path = base_dir / target
        if not path.is_file():
            return f"*{alt}: `{target}` not drawn yet*"
        return f"![{alt}]({data_uri(path)})"

    return _IMAGE.sub(inline, "\n".join(lines))
