"""RunFollower reports only its own runs' partitions, and a run's missing ones as failed."""

import dagster as dg

from cb_assets.cli.follow import RunFollower


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]), name="run_results")
def run_results(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"ran": True, "outcome": f"done by {context.run.tags['who']}"}
    )


def test_another_commands_materializations_are_not_ours(capsys) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        follower = RunFollower(instance, "run_results", ["a", "b"])

        def run(key: str, who: str) -> str:
            return dg.materialize(
                [run_results], partition_key=key, instance=instance, tags={"who": who}
            ).run_id

        theirs = [run("a", "them"), run("b", "them")]  # the other command, same partitions
        ours = run("a", "us")
        follower.add(ours, ["a", "b"])  # our run was to do both; it did only `a`
        why = f"run {ours[:8]} ended (success) without materializing it"
        assert follower.poll() == [why]
        lines = capsys.readouterr().out.splitlines()
        assert lines == ["[1/2] ok   a ran: done by us", f"[2/2] FAIL b {why}"], lines
        assert follower.failed == {"b": why} and follower.active == 0
        assert theirs  # materialized, and never reported as ours


def test_a_run_whose_partitions_all_landed_frees_its_slot_before_it_ends() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        follower = RunFollower(instance, "run_results", ["a", "b"])
        done = dg.materialize(
            [run_results], partition_key="a", instance=instance, tags={"who": "us"}
        ).run_id
        follower.add(done, ["a"])
        follower.add("not-started-yet", ["b"])  # a run still working on its partition
        assert (follower.active, follower.running) == (2, 2)
        follower._poll_materializations()  # `a` landed: its run has only bookkeeping left
        assert (follower.active, follower.running) == (1, 2)
