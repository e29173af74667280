"""The `aci` deploy target: a build folder as an Azure Container Instances web service (azureml-core, SDK v1).

Deploy = what the Azure ML tutorial does by hand, from the config: register the build's
`models/` folder, make an Environment with the build's pip requirements (sei-framework and
other locally installed distributions travel as private wheels), an InferenceConfig running
the build's `score.py`, an ACI deployment configuration, `Model.deploy`, and wait.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from sei_azureml_common import service_description, service_environment, service_tags

from sei_framework import (
    Build,
    DeployError,
    DeploymentStatus,
    DeployTarget,
    Endpoint,
    cors_environment,
    require_extra,
    ship_local_distributions,
)

from .options import ACI_NAME_PATTERN, AciOptions

__all__ = ["AciTarget", "RUNTIME_REQUIREMENT", "SDK_V1_WARNING"]

log = logging.getLogger("sei_deploy_aci")

RUNTIME_REQUIREMENT = "azureml-defaults>=1.57"
"""What Azure ML v1 needs in an inference environment: the inference server (azmlinfsrv) and friends."""
SDK_V1_WARNING = (
    "Azure ML SDK v1 (azureml-core), which the aci target uses, is out of support since 2026-06-30; "
    "deploy the same config to a managed online endpoint with target azureml-online (configs/mnist-online.yaml)"
)
"""Logged once by `deploy` and `dry_run` (a warning: `sei` shows it on stderr, and so does Python's
last-resort handler when nothing configured logging)."""


def azureml() -> ModuleType:
    """`azureml.core`, or a DeployError naming the `aci` extra."""
    require_extra("aci", "the aci deploy target (Azure ML SDK v1)", DeployError)
    import azureml.core as core

    return core


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path.expanduser().resolve())


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def _short(exc: BaseException) -> str:
    """The exception's type and its message on one line (azureml's messages span several)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


class AciTarget(DeployTarget):
    """Azure Container Instances through an Azure ML workspace; `delete` removes the web service."""

    name: ClassVar[str] = "aci"
    Options = AciOptions

    @property
    def opts(self) -> AciOptions:
        return self.options  # type: ignore[return-value]

    # -- what would be submitted -------------------------------------------------------------

    def service_name(self, name: str) -> str:
        service = self.opts.service_name or name
        if not re.fullmatch(ACI_NAME_PATTERN, service):
            raise DeployError(
                f"{service!r} cannot name an ACI service (3-32 characters: a-z, 0-9 and hyphens, starting "
                "with a letter); set deploy.options.service_name"
            )
        return service

    def tags(self, build: Build) -> dict[str, str]:
        return service_tags(build, self.opts)

    def description(self, build: Build) -> str:
        return service_description(build, self.opts)

    def pip_packages(self, wheel_refs: list[str], index_requirements: list[str]) -> list[str]:
        """The build's requirements (wheels first, by URL or path) and the Azure ML inference runtime."""
        return list(dict.fromkeys([*wheel_refs, *index_requirements, RUNTIME_REQUIREMENT]))

    def environment(self, build: Build, pip_packages: list[str], *, dry_run: bool = False) -> Any:
        core = azureml()
        from azureml.core.conda_dependencies import CondaDependencies

        env = core.Environment(f"sei-{self.service_name(build.name)}")
        deps = CondaDependencies.create(
            python_version=self.opts.python_version, pip_packages=pip_packages, pin_sdk_version=False
        )
        deps.remove_channel("anaconda")
        env.python.conda_dependencies = deps
        if self.opts.base_image:
            env.docker.base_image = self.opts.base_image
        env.environment_variables = {
            **service_environment(build, dry_run=dry_run, target="aci (SDK v1, no secret injection)"),
            **cors_environment(self.opts.cors_origins),
        }
        return env

    def inference_config(self, build: Build, environment: Any) -> Any:
        from azureml.core.model import InferenceConfig

        config = InferenceConfig(
            entry_script="score.py", source_directory=str(build.path.resolve()), environment=environment
        )
        config.validate_configuration()
        return config

    def deployment_config(self, build: Build) -> Any:
        azureml()
        from azureml.core.webservice import AciWebservice

        config = AciWebservice.deploy_configuration(
            cpu_cores=self.opts.cpu_cores,
            memory_gb=self.opts.memory_gb,
            tags=self.tags(build),
            description=self.description(build),
            auth_enabled=self.opts.auth_enabled,
            ssl_enabled=self.opts.ssl_enabled or None,
            ssl_cert_pem_file=_path(self.opts.ssl_cert_pem_file),
            ssl_key_pem_file=_path(self.opts.ssl_key_pem_file),
            ssl_cname=self.opts.ssl_cname,
            dns_name_label=self.opts.dns_name_label,
        )
        config.validate_configuration()
        return config

    # -- Azure --------------------------------------------------------------------------------

    def _auth(self) -> Any:
        from azureml.core import authentication as auth

        kind = self.opts.auth
        if kind == "cli":
            return auth.AzureCliAuthentication()
        if kind == "msi":
            return auth.MsiAuthentication()
        if kind == "service-principal":
            names = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
            missing = [n for n in names if not os.environ.get(n)]
            if missing:
                raise DeployError(f"auth 'service-principal' needs the environment variables {', '.join(missing)}")
            tenant, client, secret = (os.environ[n] for n in names)
            return auth.ServicePrincipalAuthentication(tenant, client, secret)
        return None

    def workspace(self) -> Any:
        """The workspace named by the options (or config.json); the first call that needs Azure."""
        core = azureml()
        o = self.opts
        try:
            if o.workspace_name:
                return core.Workspace.get(
                    name=o.workspace_name,
                    subscription_id=o.subscription_id,
                    resource_group=o.resource_group,
                    auth=self._auth(),
                )
            path = str(o.workspace_config) if o.workspace_config else None
            return core.Workspace.from_config(path=path, auth=self._auth())
        except DeployError:
            raise
        except Exception as exc:
            raise DeployError(f"cannot open the Azure ML workspace: {_short(exc)}") from None

    def deploy(self, build: Build) -> Endpoint:
        log.warning(SDK_V1_WARNING)
        core = azureml()
        service_name = self.service_name(build.name)
        deployment_config = self.deployment_config(build)
        if self.opts.auth_enabled and not self.opts.ssl_enabled:
            log.warning(
                "ACI service %r: auth_enabled without ssl_enabled serves plain http, where the service key "
                "travels in clear; SEI's client will not send it there unless allowed (--allow-insecure-http). "
                "Set ssl_enabled with ssl_cert_pem_file, ssl_key_pem_file and ssl_cname (docs/azure.md, TLS)",
                service_name,
            )
        with tempfile.TemporaryDirectory(prefix="sei-aci-") as tmp:
            shipment = ship_local_distributions(build.requirements, Path(tmp))
            ws = self.workspace()
            try:
                urls = [core.Environment.add_private_pip_wheel(ws, str(w), exist_ok=True) for w in shipment.wheels]
                env = self.environment(build, self.pip_packages(urls, shipment.index_requirements))
                model = core.Model.register(
                    workspace=ws,
                    model_path=str(build.models_dir),
                    model_name=self.opts.model_name or service_name,
                    tags=self.tags(build),
                    description=self.description(build),
                )
                service = core.Model.deploy(
                    workspace=ws,
                    name=service_name,
                    models=[model],
                    inference_config=self.inference_config(build, env),
                    deployment_config=deployment_config,
                    overwrite=True,
                )
                service.wait_for_deployment(show_output=False, timeout_sec=self.opts.deploy_timeout_s)
            except DeployError:
                raise
            except Exception as exc:
                raise DeployError(f"deploying ACI service {service_name!r} failed: {_short(exc)}") from None
        return self._endpoint(service, service_name)

    def _endpoint(self, service: Any, service_name: str) -> Endpoint:
        """The scoring URI, with the service key as a header when auth is on; unhealthy is an error."""
        try:
            if service.state != "Healthy":
                logs = "\n".join(str(service.get_logs() or "").strip().splitlines()[-20:])
                raise DeployError(
                    f"ACI service {service_name!r} is {service.state}, not Healthy; its log ends:\n{logs}"
                )
            headers = {}
            if self.opts.auth_enabled:
                primary, _ = service.get_keys()
                headers = {"Authorization": f"Bearer {primary}"}
        except DeployError:
            raise
        except Exception as exc:
            raise DeployError(f"cannot read ACI service {service_name!r}: {_short(exc)}") from None
        return Endpoint(service.scoring_uri, headers=headers)

    def _service(self, service_name: str) -> Any:
        """The ACI web service called `service_name` (a GET), or None when there is none."""
        azureml()
        from azureml.core.webservice import Webservice
        from azureml.exceptions import WebserviceException

        ws = self.workspace()
        try:
            return Webservice(ws, service_name)
        except WebserviceException as exc:
            if "WebserviceNotFound" in str(exc) or "not found" in str(exc).lower():
                return None
            raise DeployError(f"cannot look up ACI service {service_name!r}: {_short(exc)}") from None

    def status(self, name: str) -> DeploymentStatus:
        """What Azure holds of the service: its state and scoring URI (never its keys), and where its log is."""
        service_name = self.service_name(name)
        service = self._service(service_name)
        if service is None:
            return DeploymentStatus("not deployed", details={"service": service_name})
        state = str(getattr(service, "state", None) or "unknown")
        details = {
            "service": service_name, "aci_state": state,
            "logs": f"Webservice(workspace, {service_name!r}).get_logs() (azureml-core)",
        }  # fmt: skip
        return DeploymentStatus(
            "running" if state == "Healthy" else state.lower(),
            scoring_uri=getattr(service, "scoring_uri", None) or None, details=details,
        )  # fmt: skip

    def delete(self, name: str) -> bool:
        service_name = self.service_name(name)
        service = self._service(service_name)
        if service is None:
            return False
        try:
            service.delete()
        except Exception as exc:
            raise DeployError(f"cannot delete ACI service {service_name!r}: {_short(exc)}") from None
        return True

    # -- dry run ------------------------------------------------------------------------------

    def dry_run(self, build: Build, out: Path) -> list[Path]:
        """Write the environment, inference, deployment and model settings, and the wheels; call no Azure API."""
        log.warning(SDK_V1_WARNING)
        out = Path(out)
        service_name = self.service_name(build.name)
        shipment = ship_local_distributions(build.requirements, out / "wheels")
        refs = [_relative(w, out) for w in shipment.wheels]
        env = self.environment(build, self.pip_packages(refs, shipment.index_requirements), dry_run=True)
        env.save_to_directory(str(out / "environment"), overwrite=True)
        inference = self.inference_config(build, env)
        deployment = self.deployment_config(build)
        documents = {
            "service.json": {
                "name": service_name,
                "workspace": self._workspace_reference(),
                "private_wheels": refs,
                "note": "at deploy, each private wheel is uploaded with Environment.add_private_pip_wheel "
                "and its URL replaces the wheel's path in the environment's pip packages",
            },
            "model.json": {
                "model_name": self.opts.model_name or service_name,
                "model_path": _relative(build.models_dir, out),
                "tags": self.tags(build),
                "description": self.description(build),
            },
            "inference_config.json": {
                "entry_script": inference.entry_script,
                "source_directory": _relative(build.path, out),
                "environment": "environment",
            },
            "deployment_config.json": {
                key: value
                for key, value in vars(deployment).items()
                if not key.startswith("_") and value is not None and key not in ("primary_key", "secondary_key")
            },
        }
        written = [*shipment.wheels, out / "environment" / "conda_dependencies.yml"]
        written.append(out / "environment" / "azureml_environment.json")
        for file_name, document in documents.items():
            (out / file_name).write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
            written.append(out / file_name)
        return [build.score_script, *written]

    def _workspace_reference(self) -> dict[str, Any]:
        o = self.opts
        if o.workspace_name:
            return {"subscription_id": o.subscription_id, "resource_group": o.resource_group, "name": o.workspace_name}
        return {
            "config": str(o.workspace_config) if o.workspace_config else "config.json found from the working folder"
        }
