import dagster as dg

# One partition per task (`<repo>-<task_id>`), registered by `benchmark_pairs`, so a
# single missing image can be pulled again on its own.
task_partitions = dg.DynamicPartitionsDefinition(name="tasks")


def task_key(repo: str, task_id: int) -> str:
    return f"{repo}-{task_id}"


def parse_task_key(key: str) -> tuple[str, int]:
    repo, _, task_id = key.rpartition("-")
    if not repo or not task_id.isdigit():
        raise ValueError(f"invalid task key {key!r}: expected <repo>-<task_id>")
    return repo, int(task_id)
