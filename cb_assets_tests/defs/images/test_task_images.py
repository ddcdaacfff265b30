"""task_images against a real Docker engine and a real local registry."""

import json

import dagster as dg
import docker
import pytest

from cb_assets.defs.images.engine import ImageRef
from cb_assets.shared.dataset import load_pairs
from cb_assets_tests.support.platform import gave_up_after_retries, key, open_platform
from cb_assets_tests.support.standin_images import push_standin


@pytest.fixture(scope="module")
def standins(docker_host, local_registry, lite_dataset):
    """The 26 lite task images, pushed to the local registry and absent from the engine."""
    client = docker.DockerClient(base_url=docker_host)
    tasks = sorted({(p.repo, p.task_id) for p in load_pairs(lite_dataset, "lite")})
    for repo, task_id in tasks:
        ref = ImageRef(repo, task_id)
        push_standin(client, local_registry, ref.local_name)
        try:
            client.images.remove(ref.local_name, force=True)
        except docker.errors.ImageNotFound:
            pass
    return client, tasks


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory, lite_dataset, redis_url, fork_socket, docker_host, local_registry, standins
):
    with (
        pytest.MonkeyPatch.context() as mp,
        open_platform(
            tmp_path_factory.mktemp("images"), lite_dataset, redis_url, fork_socket, mp, n_pairs=100
        ) as platform,
    ):
        mp.setenv("CB_DOCKER_HOST", docker_host)
        mp.setenv("CB_IMAGE_REGISTRY", local_registry)
        assert platform.materialize(["benchmark_pairs"]).success
        yield platform


def materialize_images(platform) -> dict[str, dict]:
    metas = {}
    for task in sorted(platform.instance.get_dynamic_partitions("tasks")):
        result = platform.materialize(["task_images"], task, raise_on_error=True)
        [event] = result.asset_materializations_for_node("task_images")
        metas[task] = {k: v.value for k, v in event.metadata.items()}
    return metas


def test_missing_images_are_pulled_then_left_alone(platform, standins) -> None:
    client, tasks = standins
    first = materialize_images(platform)
    assert len(first) == 26 and all(m["pulled"] for m in first.values())
    for repo, task_id in tasks:  # under upstream's name, where its runner looks
        client.images.get(ImageRef(repo, task_id).local_name)
    second = materialize_images(platform)
    assert not any(m["pulled"] for m in second.values())  # present ones are left alone
    rows = platform.query(
        "select count(*), count(repo_digest), bool_and(probe_ok), "
        "bool_and(present) from task_images"
    )
    assert rows == [(26, 26, True, True)]

    d = platform.defs()
    report = dg.materialize(
        [*d.assets, *d.asset_checks],
        instance=platform.instance,
        resources=d.resources,
        selection=dg.AssetSelection.assets("cost_manifest", "verification_report"),
        tags={"experiment": "oracle"},  # no pair has run yet: report the default experiment
    )
    assert report.success
    text = (platform.data_dir / "experiments" / "oracle" / "verification-report.md").read_text()
    assert "| VERIFIED | 26/26 images present, 26/26 /workspace probes passed |" in text


def test_results_carry_the_image_digest_and_stale_ones_are_flagged(
    platform, standins, local_registry
) -> None:
    client, tasks = standins
    pair = platform.query("select pair, repo, task_id from benchmark_pairs order by pair")[0]
    task = f"{pair[1]}-{pair[2]}"
    platform.materialize(["task_images"], task, raise_on_error=True)
    platform.materialize(["run_results"], key(pair[0], "solo"), raise_on_error=True)
    digest = platform.query(f"select repo_digest from task_images where task = '{task}'")[0][0]
    assert platform.query(f"select image_digest from run_results where pair = '{pair[0]}'") == [
        (digest,)
    ]

    d = platform.defs()
    check = dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("run_results"), "results_match_images")
    )

    def stale_check():
        result = dg.materialize(
            [*d.assets, *d.asset_checks],
            instance=platform.instance,
            resources=d.resources,
            selection=check,
        )
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    assert stale_check().passed
    # the task's image is rebuilt upstream: a new digest in the registry
    ref = ImageRef(pair[1], pair[2])
    push_standin(client, local_registry, ref.local_name, marker="rebuilt")
    client.images.remove(ref.local_name, force=True)
    platform.materialize(["task_images"], task, raise_on_error=True)
    evaluation = stale_check()
    assert not evaluation.passed
    assert key(pair[0], "solo") in evaluation.metadata["partitions"].value


def test_image_without_workspace_fails_its_probe(platform, standins, local_registry) -> None:
    client, _ = standins
    ref = ImageRef("dspy_task", 8394)
    push_standin(client, local_registry, ref.local_name, with_workspace=False)
    client.images.remove(ref.local_name, force=True)
    result = platform.materialize(["task_images"], "dspy_task-8394", raise_on_error=True)
    [event] = result.asset_materializations_for_node("task_images")
    assert "has no /workspace" in event.metadata["probe"].value
    assert (
        platform.query(
            "select probe_ok, probe_message from task_images where task = 'dspy_task-8394'"
        )[0][0]
        is False
    )
    probes = [
        c
        for c in client.containers.list(all=True)
        if c.attrs["Config"]["Cmd"] == ["test", "-d", "/workspace"]
    ]
    assert probes == []  # probe containers are removed
    push_standin(client, local_registry, ref.local_name)  # leave a good image behind
    client.images.remove(ref.local_name, force=True)
    platform.materialize(["task_images"], "dspy_task-8394", raise_on_error=True)


def test_unreachable_registry_is_retried_then_fails_with_the_engines_message(
    platform, monkeypatch
) -> None:
    monkeypatch.setenv("CB_IMAGE_REGISTRY", "127.0.0.1:1")
    monkeypatch.setenv("CB_IMAGE_NAMESPACE", "nobody")
    task = "go_chi_task-26"
    client = docker.DockerClient(base_url=platform.defs().resources["docker_engine"].endpoint)
    try:
        client.images.remove(ImageRef("go_chi_task", 26).local_name, force=True)
    except docker.errors.ImageNotFound:
        pass
    result = platform.materialize(["task_images"], task)
    assert not result.success
    message = gave_up_after_retries(result)
    assert "pulling 127.0.0.1:1/nobody/cooperbench-go-chi:task26" in message
    assert "connection refused" in message.lower() and "after 3 attempts" in message


def test_unreachable_engine_is_one_clear_error(platform, monkeypatch) -> None:
    monkeypatch.setenv("CB_DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = platform.materialize(["task_images"], "go_chi_task-26")
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.event_specific_data.error.message
    assert "Docker engine at unix:///nonexistent/docker.sock is unreachable" in message
    assert json.dumps(message).count("Traceback") == 0
