import dagster as dg
import docker

from cb_assets import config
from cb_assets.defs.images.engine import ImageRef, connect
from cb_assets.shared.dataset import DEFAULT_IMAGE_NAMESPACE


class DockerEngine(dg.ConfigurableResource):
    """The Docker engine that holds the task images, and where missing ones are pulled from."""

    endpoint: str = "unix:///var/run/docker.sock"
    registry: str = ""  # empty: Docker Hub; e.g. 127.0.0.1:5000 for a local mirror
    namespace: str = DEFAULT_IMAGE_NAMESPACE
    probe_timeout_seconds: int = 120

    def client(self) -> docker.DockerClient:
        return connect(self.endpoint)

    def ref(self, repo: str, task_id: int) -> ImageRef:
        return ImageRef(repo, task_id, namespace=self.namespace, registry=self.registry)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "docker_engine": DockerEngine(
                endpoint=config.docker_host(),
                registry=config.image_registry(),
                namespace=config.image_namespace(DEFAULT_IMAGE_NAMESPACE),
            )
        }
    )
