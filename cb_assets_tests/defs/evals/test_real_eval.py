"""The real `cooperbench eval` through eval_results, against a real Docker engine.

No real task image is reachable here, so the stand-in (busybox and /workspace) cannot host
upstream's test sandbox: the evaluation must come out as an infrastructure failure with the
engine's message, retried and then given up on — never as a pass or a fail.
"""

import docker

from cb_assets.defs.images.engine import ImageRef
from cb_assets_tests.support.platform import gave_up_after_retries, key
from cb_assets_tests.support.standin_images import push_standin


def test_real_eval_on_a_standin_image_is_an_infrastructure_failure(
    make_platform, docker_host, local_registry, monkeypatch
) -> None:
    platform = make_platform(n_pairs=1)
    monkeypatch.setenv("DOCKER_HOST", docker_host)  # what upstream's eval backend connects to
    monkeypatch.setenv("CB_DOCKER_HOST", docker_host)
    monkeypatch.setenv("CB_IMAGE_REGISTRY", local_registry)
    assert platform.materialize(["benchmark_pairs"]).success
    pair, repo, task_id = platform.query("select pair, repo, task_id from benchmark_pairs")[0]
    client = docker.DockerClient(base_url=docker_host)
    push_standin(client, local_registry, ImageRef(repo, task_id).local_name)
    platform.materialize(["task_images"], f"{repo}-{task_id}", raise_on_error=True)
    partition = key(pair, "coop-nocomm")
    platform.materialize(["run_results"], partition, raise_on_error=True)

    result = platform.materialize(["eval_results"], partition)
    assert not result.success
    message = gave_up_after_retries(result)
    assert "cooperbench eval exited with" in message and "giving up after 3 attempts" in message
    assert "OCI runtime" in message or "executable file not found" in message
    assert platform.query(
        "select count(*) from information_schema.tables where table_name = 'eval_results'"
    ) == [(0,)]  # nothing counted
