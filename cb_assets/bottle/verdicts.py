"""What the self-check's data says: each promise checked against the DuckDB file the platform
wrote and the ledger of what the model server served, one line per finding."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cb_assets.bottle.model_server import read_ledger
from cb_assets.bottle.policy import conversation_key

REPORT_TRUTHS = ("images_present", "infra_retried", "evals_complete")
EXPERIMENT_MODELS = {
    "bottle": "bottle",
    "bottle_faults": "bottle-faults",
    "bottle_steps": "bottle-steps",
}


@dataclass
class Findings:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def expect(self, holds: bool, what: str, evidence: str) -> None:
        self.lines.append(f"{'ok  ' if holds else 'FAIL'} {what}: {evidence}")
        self.ok = self.ok and holds


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def policy_key(setting: str, pair: str, agent_id: str) -> str:
    """The model server's name for an agent's conversation in pair-run `pair` (`…-f1_f2`)."""
    a, b = (int(part.removeprefix("f")) for part in pair.rsplit("-", 1)[1].split("_"))
    asked = {"solo": [a, b], "agent1": [a], "agent2": [b]}[agent_id]
    return conversation_key(setting, asked, agent_id)


def check(root: Path, plan: Any, faults_served: list[dict[str, Any]]) -> Findings:
    found = Findings()
    database = root / "data" / "cooperbench.duckdb"
    if not database.is_file():
        found.expect(False, "DuckDB file", f"{database} was not written")
        return found
    ledger = read_ledger(root / "model-ledger.jsonl")
    with duckdb.connect(str(database), read_only=True) as conn:
        _report(found, conn)
        _outcomes(found, conn)
        _costs_and_steps(found, conn, ledger)
        _messaging(found, conn)
        _attempts(found, conn, plan)
    scheduled = {(f"{k.split('|')[0]}|{k.split('|')[1]}") for k in plan.schedule.faults}
    served = {f"{f['model']}|{f['key']}" for f in faults_served}
    found.expect(
        scheduled <= served,
        "every scheduled fault was served",
        f"{len(served)} of {len(scheduled)} faulted conversations hit"
        + (f"; never hit: {sorted(scheduled - served)}" if scheduled - served else ""),
    )
    return found


def _report(found: Findings, conn: duckdb.DuckDBPyConnection) -> None:
    sql = "select key, verdict, evidence from verification_report where experiment = ?"
    rows = _rows(conn, sql, "bottle")
    verdicts = {r["key"]: r for r in rows}
    for key in REPORT_TRUTHS:
        row = verdicts.get(key)
        verdict = row["verdict"] if row else "missing"
        evidence = f"{verdict}: {row['evidence'] if row else ''}"
        found.expect(verdict == "VERIFIED", f"bottle report {key}", evidence)


def _outcomes(found: Findings, conn: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(
        conn,
        "select setting, pair, outcome, merge_status, merge_strategy from eval_results "
        "where experiment = 'bottle' order by setting, pair",
    )
    summary = ", ".join(
        f"{r['setting']} {r['pair'].rsplit('-', 1)[1]}: {r['outcome']}"
        + (f" ({r['merge_status']}/{r['merge_strategy']})" if r["merge_status"] else "")
        for r in rows
    )
    outcomes = {r["outcome"] for r in rows}
    merges = {r["merge_status"] for r in rows}
    test_failures = [r for r in rows if r["outcome"] == "fail" and r["merge_status"] != "conflicts"]
    found.expect("pass" in outcomes, "an evaluation passes", summary)
    found.expect(bool(test_failures), "an evaluation fails its tests", f"{len(test_failures)} do")
    statuses = f"merge statuses {sorted(map(str, merges))}"
    found.expect("conflicts" in merges, "a merge conflicts", statuses)
    found.expect("error" not in outcomes, "no evaluation errors", f"outcomes {sorted(outcomes)}")


def _costs_and_steps(
    found: Findings, conn: duckdb.DuckDBPyConnection, ledger: list[dict[str, Any]]
) -> None:
    for experiment, model in EXPERIMENT_MODELS.items():
        served = [x for x in ledger if x["model"] == model]
        spent = _rows(
            conn,
            "select coalesce(sum(cost), 0) cost, coalesce(sum(input_tokens), 0) tin, "
            "coalesce(sum(output_tokens), 0) tout from run_attempts where experiment = ?",
            experiment,
        )[0]
        cost = sum(x["cost"] for x in served)
        tokens_in = sum(x["prompt_tokens"] for x in served)
        found.expect(
            cost > 0 and abs(float(spent["cost"]) - cost) < 1e-9,
            f"{experiment}: cost of every attempt equals what the model server served",
            f"platform ${float(spent['cost']):.6f}, server ${cost:.6f} over {len(served)} answers"
            f"; input tokens {int(spent['tin'])} vs {tokens_in}",
        )
    rows = _rows(
        conn,
        "select r.setting, r.pair, r.agent_id, r.steps, a.attempt from run_results r join "
        "run_attempts a on a.partition = r.arm || '|' || r.pair and a.final "
        "where r.experiment = 'bottle' and r.agent_id <> 'agent1'",
    )  # agent1's ask recurs across pairs (see selfcheck.conversation_keys): not countable
    wrong = []
    for r in rows:
        key = policy_key(r["setting"], r["pair"], r["agent_id"])
        answers = sum(
            1 for x in ledger if x["model"] == "bottle" and x["key"] == key
            and x["attempt"] == r["attempt"]
        )  # fmt: skip
        if not r["steps"] or int(r["steps"]) != answers:
            wrong.append(f"{key} attempt {r['attempt']}: steps {r['steps']}, served {answers}")
    found.expect(
        bool(rows) and not wrong,
        "bottle: steps equal the answers the server gave that attempt (solo agents, agent2s)",
        f"{len(rows) - len(wrong)}/{len(rows)} agents" + (f"; {wrong[:3]}" if wrong else ""),
    )


def _messaging(found: Findings, conn: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(
        conn,
        "select setting, count(*) n, count(distinct pair) pairs, "
        "count(*) filter (where text like '%I am implementing%') scripted "
        "from conversations where experiment = 'bottle' group by setting",
    )
    by = {r["setting"]: r for r in rows}
    comm = by.get("coop-comm", {"n": 0, "pairs": 0, "scripted": 0})
    found.expect(
        comm["pairs"] == 3 and comm["scripted"] == comm["n"] and comm["n"] >= 6,
        "coop-comm conversations are the agents' own send_message calls",
        f"{comm['n']} messages over {comm['pairs']} pairs, {comm['scripted']} of them the "
        "policy's text; coop-nocomm " + str(by.get("coop-nocomm", {"n": 0})["n"]),
    )
    found.expect("coop-nocomm" not in by, "coop-nocomm sends no message", "none recorded")


def _attempts(found: Findings, conn: duckdb.DuckDBPyConnection, plan: Any) -> None:
    rows = _rows(
        conn,
        "select experiment, setting, pair, count(*) n, max(attempt) last, "
        "string_agg(classification || '/' || rule, ' > ' order by attempt) story, "
        "arg_max(classification, attempt) final "
        "from run_attempts group by experiment, setting, pair order by all",
    )
    for r in rows:
        label = f"{r['experiment']}|{r['setting']}|{r['pair'].rsplit('-', 1)[1]}"
        experiment = r["experiment"]
        if experiment == "bottle_steps":
            holds = r["n"] == 1 and r["final"] == "limits_exceeded"
            found.expect(holds, f"{label} step limit, never retried", r["story"])
            continue
        attempts = plan.expected_attempts.get(label, 1)
        final = plan.expected_final.get(label, "submitted")
        holds = r["n"] == attempts == r["last"] and r["final"] == final
        found.expect(holds, f"{label} {attempts} attempt(s), ends {final}", r["story"])
