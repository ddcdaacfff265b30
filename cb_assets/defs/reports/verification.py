"""The verification report: which promises hold, computed from what is recorded.

Every verdict comes from the data handed in here; a promise the platform has no
data for yet is NOT CHECKED with the reason, never VERIFIED.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.shared.failures import MAX_ATTEMPTS
from cb_assets.shared.partition_keys import partition_key
from cb_assets.shared.settings import SETTING_NAMES

VERIFIED, FAILED, NOT_CHECKED = "VERIFIED", "FAILED", "NOT CHECKED"
SMOKE_PAIRS = 5


@dataclass(frozen=True)
class Truth:
    key: str
    truth: str
    verdict: str
    evidence: str


@dataclass
class ReportInputs:
    """What the report is computed from.

    `results` are run_results rows with one extra boolean column, `file_ok`: the
    result.json the row came from is still on disk and still holds that run.
    """

    phase: str
    subset: str
    expected_pairs: list[str]
    results: pd.DataFrame
    manifest: dict[str, Any] | None
    result_file_costs: dict[str, float] = field(default_factory=dict)
    images: pd.DataFrame | None = None
    attempts: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    artifacts: list[tuple[str, str, bool]] = field(default_factory=list)


def _sample(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _complete_pairs(results: pd.DataFrame, setting: str) -> set[str]:
    """Pairs of `setting` whose result file is intact and no agent ended in `Error`."""
    rows = results[results["setting"] == setting]
    if rows.empty:
        return set()
    ok = (rows["file_ok"].astype(bool) & (rows["status"] != "Error")).groupby(rows["pair"]).all()
    return set(ok[ok].index)


def _setting_key(setting: str) -> str:
    return f"{setting.replace('-', '_')}_complete"  # truth keys double as asset check names


TRUTH_KEYS = (
    "dataset_loaded",
    "images_present",
    "smoke_run",
    "solo_complete",
    "coop_comm_complete",
    "coop_nocomm_complete",
    "messaging_recorded",
    "infra_retried",
    "cost_tracked",
    "evals_complete",
)


def _setting_truth(inputs: ReportInputs, setting: str) -> Truth:
    expected = inputs.expected_pairs
    done = _complete_pairs(inputs.results, setting)
    missing = [p for p in expected if p not in done]
    truth = f"{setting} is complete on the {inputs.subset} subset"
    if not expected:
        return Truth(
            _setting_key(setting), truth, NOT_CHECKED, "no pairs loaded: run benchmark_pairs"
        )
    rows = inputs.results[inputs.results["setting"] == setting]
    statuses = ", ".join(f"{s} {n}" for s, n in rows["status"].value_counts().items()) or "none"
    done_n = len(expected) - len(missing)
    evidence = (
        f"{done_n}/{len(expected)} pairs with a final result on disk (agent statuses: {statuses})"
    )
    if missing:
        return Truth(
            _setting_key(setting),
            truth,
            FAILED,
            f"{evidence}; missing or broken: {_sample(missing)}",
        )
    return Truth(_setting_key(setting), truth, VERIFIED, evidence)


def _smoke_truth(inputs: ReportInputs) -> Truth:
    truth = f"a smoke run of {SMOKE_PAIRS} pairs went end to end in all three settings"
    complete = set.intersection(*(_complete_pairs(inputs.results, s) for s in SETTING_NAMES))
    evidence = f"{len(complete)} pairs have final results in solo, coop-comm and coop-nocomm"
    verdict = VERIFIED if len(complete) >= SMOKE_PAIRS else FAILED
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
    truth = (
        "coop-comm runs exchange messages with the messaging flag on; coop-nocomm runs send none"
    )
    r = inputs.results
    comm, nocomm = r[r["setting"] == "coop-comm"], r[r["setting"] == "coop-nocomm"]
    if comm.empty or nocomm.empty:
        return Truth(
            "messaging_recorded", truth, NOT_CHECKED, "no coop-comm or no coop-nocomm results yet"
        )
    comm_msgs = int(comm.drop_duplicates("pair")["messages_sent"].fillna(0).sum())
    nocomm_msgs = int(nocomm.drop_duplicates("pair")["messages_sent"].fillna(0).sum())
    flags_ok = bool(comm["messaging_enabled"].all()) and not bool(nocomm["messaging_enabled"].any())
    evidence = (
        f"coop-comm: {comm_msgs} messages over {comm['pair'].nunique()} pairs; "
        f"coop-nocomm: {nocomm_msgs} messages; messaging flags "
        f"{'as expected' if flags_ok else 'WRONG'}"
    )
    verdict = VERIFIED if flags_ok and comm_msgs > 0 and nocomm_msgs == 0 else FAILED
    return Truth("messaging_recorded", truth, verdict, evidence)


def _retries_truth(inputs: ReportInputs) -> Truth:
    """Every non-final infra_error attempt was followed by another attempt in the same run,
    and every final one came after MAX_ATTEMPTS attempts in its run."""
    truth = "infrastructure failures are retried and tagged infra_error when they persist"
    attempts = inputs.attempts
    if attempts is None or attempts.empty:
        return Truth("infra_retried", truth, NOT_CHECKED, "no run_attempts recorded yet")
    infra = attempts[attempts["classification"] == "infra_error"]
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
            if row.classification != "infra_error":
                continue
            if row.final:
                gave_up += 1
                if len(group) < MAX_ATTEMPTS:
                    short.append(partition)
            elif i == len(group) - 1:
                unretried.append(partition)
        if (
            group.iloc[-1]["classification"] != "infra_error"
            and (group["classification"] == "infra_error").any()
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
    expected = {partition_key(p, s) for p in inputs.expected_pairs for s in SETTING_NAMES}
    evals = inputs.evals.assign(key=partition_key(inputs.evals["pair"], inputs.evals["setting"]))
    done = set(evals.loc[evals["outcome"] != "error", "key"])
    counts = evals["outcome"].value_counts()
    evidence = (
        f"{len(done & expected)}/{len(expected)} pair-runs evaluated: "
        f"{counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
        f"{counts.get('error', 0)} errors; merges: "
        + ", ".join(f"{k} {v}" for k, v in evals["merge_status"].value_counts().items())
    )
    missing = sorted(expected - done)
    if missing:
        return Truth("evals_complete", truth, FAILED, f"{evidence}; missing: {_sample(missing)}")
    return Truth("evals_complete", truth, VERIFIED, evidence)


def evaluate_truths(inputs: ReportInputs) -> list[Truth]:
    return [
        _dataset_truth(inputs),
        _images_truth(inputs),
        _smoke_truth(inputs),
        *(_setting_truth(inputs, s) for s in SETTING_NAMES),
        _messaging_truth(inputs),
        _retries_truth(inputs),
        _cost_truth(inputs),
        _evals_truth(inputs),
    ]


REQUIREMENTS = [
    ("Images of the subset present", ["images_present"]),
    (f"Smoke run of {SMOKE_PAIRS} pairs end to end", ["smoke_run"]),
    (
        "solo / coop-comm / coop-nocomm complete on the subset",
        ["solo_complete", "coop_comm_complete", "coop_nocomm_complete", "messaging_recorded"],
    ),
    ("Infrastructure failures retried and tagged", ["infra_retried"]),
    ("Cost tracked per run", ["cost_tracked"]),
    ("Merge and test outcomes for every pair-run", ["evals_complete"]),
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
    lines = [
        "---",
        f"phase: {inputs.phase}",
        f"verified: {now.isoformat(timespec='seconds')}",
        f"status: {status}",
        f"score: {verified}/{len(truths)} truths verified",
        "---",
        "",
        f"# Verification report: {inputs.phase}",
        "",
        "## Observable Truths",
        "",
        "| # | Truth | Status | Evidence |",
        "|---|-------|--------|----------|",
    ]
    for i, t in enumerate(truths, 1):
        lines.append(f"| {i} | {t.truth} | {t.verdict} | {t.evidence.replace('|', '/')} |")
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
    for requirement, keys in REQUIREMENTS:
        verdicts = [by_key[k].verdict for k in keys]
        numbers = ", ".join(str(list(by_key).index(k) + 1) for k in keys)
        lines.append(f"| {requirement} | {numbers} | {_overall(verdicts)} |")
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
