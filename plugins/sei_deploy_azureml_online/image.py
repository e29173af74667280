"""The Docker build context of the deployment's environment: Dockerfile, requirements, wheels.

SDK v2 has no private-wheel upload (`add_private_pip_wheel` is v1 only), and an environment
made of `image` + `conda_file` can only name packages an index serves. sei-framework is not on
an index, so the environment is a build context: Azure ML uploads this folder and builds the
image in the workspace's registry, and the wheels reach pip through `COPY`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sei_framework import Build, ship_local_distributions

__all__ = ["BATCH_RUNTIME_REQUIREMENTS", "RUNTIME_REQUIREMENT", "write_build_context"]

RUNTIME_REQUIREMENT = "azureml-inference-server-http>=1.4"
"""The server a managed online endpoint runs score.py in (azmlinfsrv)."""

BATCH_RUNTIME_REQUIREMENTS = ("fsspec>=2024.6", "azureml-core>=1.57", "azureml-dataset-runtime[fuse]>=1.57")
"""What a batch deployment's image needs beyond the build: fsspec for `sei_framework.batch` (its job
folders; the `batch` extra's, less Dask), and the two packages Azure ML's batch runner requires in every
custom environment (azureml-core, azureml-dataset-runtime[fuse], which mounts the inputs)."""

# Azure ML's documented way to extend a prebuilt inference image: pip install on top of it.
DOCKERFILE = """\
# Written by SEI: the inference image of {name}. Build context: this folder.
FROM {base_image}
COPY requirements.txt /tmp/sei/requirements.txt
{copy_wheels}RUN pip install --no-cache-dir -r /tmp/sei/requirements.txt
"""


def write_build_context(
    build: Build, folder: Path, *, base_image: str, runtime: Sequence[str] = (RUNTIME_REQUIREMENT,)
) -> list[Path]:
    """Write Dockerfile, requirements.txt and wheels/ into `folder`; return the files written. `runtime`:
    what runs the build's entry script (online: azmlinfsrv; batch: BATCH_RUNTIME_REQUIREMENTS)."""
    folder.mkdir(parents=True, exist_ok=True)
    shipment = ship_local_distributions(build.requirements, folder / "wheels")
    requirements = [f"/tmp/sei/wheels/{w.name}" for w in shipment.wheels]
    requirements += [*shipment.index_requirements, *runtime]
    (folder / "requirements.txt").write_text("\n".join(dict.fromkeys(requirements)) + "\n")
    copy_wheels = "COPY wheels/ /tmp/sei/wheels/\n" if shipment.wheels else ""
    (folder / "Dockerfile").write_text(
        DOCKERFILE.format(name=build.name, base_image=base_image, copy_wheels=copy_wheels)
    )
    return [folder / "Dockerfile", folder / "requirements.txt", *shipment.wheels]
