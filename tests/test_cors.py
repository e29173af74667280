"""CORS: exact origins validated once (sei_framework.check_cors_origins), passed to azmlinfsrv through its own
AML_CORS_ORIGINS by the local, ACI and online targets; the real server answers allowed origins only."""

from __future__ import annotations

import types

import pytest
import requests
from pydantic import ValidationError

from sei_framework import CORS_ENV, check_cors_origins

PAGE = "http://127.0.0.1:8123"
OTHER = "http://evil.example"
TOKEN = "cors-test-token-value"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM:443", "https://app.example.com"),  # as the browser sends it
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:80", "http://localhost"),
    ],
)
def test_exact_origins_are_kept_in_the_form_browsers_send(given, canonical):
    assert check_cors_origins([given, canonical], auth=True) == [canonical]


@pytest.mark.parametrize(
    ("origin", "why"),
    [
        ("https://app.example.com/", "no path"),
        ("https://app.example.com/page", "no path"),
        ("https://app.example.com?x=1", "no path"),
        ("ftp://app.example.com", "scheme must be http or https"),
        ("app.example.com", "scheme must be http or https"),
        ("null", "scheme must be http or https"),
        ("https://*.example.com", "no wildcard"),
        ("https://a.example.com,https://b.example.com", "comma"),
        (" https://app.example.com", "no wildcard, comma or space"),
        ("https://app.example.com:99999", "port"),
        ("https://app..example.com", "not a host name"),
        ("https://-app.example.com", "not a host name"),
        ("https://[::1]:8000", "IPv6"),
        ("https://app.example.com$", "not a host name"),
        ("", "not an origin"),
    ],
)
def test_malformed_origins_are_refused_by_name(origin, why):
    with pytest.raises(ValueError, match=why):
        check_cors_origins([origin], auth=False)


def test_a_password_in_an_origin_is_refused_without_being_shown():
    with pytest.raises(ValueError, match="no user name or password") as info:
        check_cors_origins(["https://user:hunter2-secret@app.example.com"], auth=False)
    assert "hunter2-secret" not in str(info.value)


def test_wildcard_only_without_auth_and_alone():
    assert check_cors_origins(["*"], auth=False) == ["*"]
    with pytest.raises(ValueError, match="requires auth: list the exact origins"):
        check_cors_origins(["*"], auth=True)
    with pytest.raises(ValueError, match="give it alone"):
        check_cors_origins(["*", PAGE], auth=False)


def test_local_options_validate_origins_against_their_own_auth():
    from sei_deploy_local import LocalOptions

    assert LocalOptions(cors_origins=[PAGE]).cors_origins == [PAGE]
    assert LocalOptions(cors_origins=["*"]).cors_origins == ["*"]
    with pytest.raises(ValidationError, match="cors_origins"):
        LocalOptions(cors_origins=["*"], auth=True)
    with pytest.raises(ValidationError, match="no path"):
        LocalOptions(cors_origins=[PAGE + "/"])


def test_aci_sets_the_variable_in_the_environment_the_sdk_saves_and_loads(tmp_path):
    pytest.importorskip("azureml.core", reason="needs the [aci] extra (make test installs it)")
    from azureml.core import Environment
    from sei_deploy_aci import AciOptions, AciTarget

    build = types.SimpleNamespace(name="sei-digits", manifest={"state": {"backend": "memory"}})
    target = AciTarget(AciOptions(cors_origins=["https://app.example.com", "https://b.example.com:8443"]))
    env = target.environment(build, ["sei-framework"], dry_run=True)
    env.save_to_directory(str(tmp_path / "environment"), overwrite=True)
    loaded = Environment.load_from_directory(str(tmp_path / "environment"))
    assert loaded.environment_variables == {CORS_ENV: "https://app.example.com,https://b.example.com:8443"}
    assert AciTarget(AciOptions()).environment(build, ["sei-framework"]).environment_variables == {}
    with pytest.raises(ValidationError, match="requires auth"):
        AciOptions(cors_origins=["*"])  # auth_enabled is the default
    assert AciOptions(cors_origins=["*"], auth_enabled=False).cors_origins == ["*"]


def test_online_deployment_yaml_carries_the_variable_and_the_sdk_loads_it(tmp_path, model_files):
    pytest.importorskip("azure.ai.ml", reason="needs the [azureml-online] extra (make test installs it)")
    import yaml
    from azure.ai.ml import load_online_deployment
    from click.testing import CliRunner
    from conftest import with_bounds
    from sei_deploy_azureml_online.options import OnlineOptions

    from sei_framework.cli import cli

    options = {"subscription_id": "00000000-0000-0000-0000-0000000000cc", "resource_group": "rg",
               "workspace_name": "ws", "cors_origins": ["https://app.example.com"]}  # fmt: skip
    data = {
        "name": "sei-diabetes",
        "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])})],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "azureml-online", "options": options},
    }
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["deploy", str(tmp_path / "svc.yaml"), "--dry-run", str(tmp_path / "dry")])
    assert result.exit_code == 0, result.output
    deployment = load_online_deployment(tmp_path / "dry" / "deployment.yml")
    assert deployment.environment_variables == {CORS_ENV: "https://app.example.com"}
    with pytest.raises(ValidationError, match="requires auth"):
        OnlineOptions(cors_origins=["*"])  # the endpoint always takes a key


def preflight(url: str, origin: str) -> requests.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    return requests.options(url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def cors_service(tmp_path_factory, model_files):
    """One real azmlinfsrv with auth and one allowed origin; AML_CORS_ORIGINS inherited from the shell is ignored."""
    import os

    import yaml

    from sei_framework import Deployment

    tmp = tmp_path_factory.mktemp("cors")
    options = {"state_dir": str(tmp / "state"), "auth": True, "token_env": "SEI_TEST_CORS_TOKEN", "cors_origins": [PAGE]}
    data = {
        "name": "cors",
        "models": [{"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0]),
                    "options": {"feature_bounds": [-1, 1]}}],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": options},
    }  # fmt: skip
    (tmp / "cors.yaml").write_text(yaml.safe_dump(data))
    saved = {k: os.environ.get(k) for k in ("SEI_TEST_CORS_TOKEN", CORS_ENV, "SEI_HOME")}
    os.environ.update({"SEI_TEST_CORS_TOKEN": TOKEN, CORS_ENV: OTHER, "SEI_HOME": str(tmp / "home")})
    deployment = Deployment.from_file(tmp / "cors.yaml")
    try:
        endpoint = deployment.deploy(tmp / "build")
        yield endpoint.scoring_uri
    finally:
        deployment.delete()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_preflight_from_the_allowed_origin_passes_auth_and_gets_the_headers(cors_service):
    answer = preflight(cors_service, PAGE)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert "authorization" in answer.headers["Access-Control-Allow-Headers"].lower()


def test_other_origins_get_no_cors_headers_not_even_an_inherited_variable(cors_service):
    answer = preflight(cors_service, OTHER)  # OTHER was in the shell's AML_CORS_ORIGINS, not in the config
    assert "Access-Control-Allow-Origin" not in answer.headers
    posted = requests.post(cors_service, json={"op": "describe"}, timeout=30,
                           headers={"Origin": OTHER, "Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert posted.status_code == 200 and "Access-Control-Allow-Origin" not in posted.headers


def test_actual_requests_and_seis_own_errors_carry_the_header_for_the_page(cors_service):
    ok = requests.post(cors_service, json={"op": "describe"}, timeout=30,
                       headers={"Origin": PAGE, "Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == PAGE
    assert "diabetes" in ok.json()["models"]
    refused = requests.post(cors_service, json={"op": "describe"}, headers={"Origin": PAGE}, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["Access-Control-Allow-Origin"] == PAGE  # the page can read why
    shaped = requests.post(cors_service, data=b"\xff", timeout=30,
                           headers={"Origin": PAGE, "Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert shaped.status_code == 400 and shaped.json()["error"]["code"] == "invalid_encoding"
    assert shaped.headers["Access-Control-Allow-Origin"] == PAGE
    stranger = requests.post(cors_service, json={"op": "describe"}, headers={"Origin": OTHER}, timeout=30)
    assert stranger.status_code == 401 and "Access-Control-Allow-Origin" not in stranger.headers


def test_the_container_command_takes_origins_with_the_same_checks(tmp_path):
    from sei_deploy_local.__main__ import main

    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--auth", "--cors-origin", "*"])
    assert "cors_origins" in str(info.value) and "requires auth" in str(info.value)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--cors-origin", "https://app.example.com/"])
    assert "no path" in str(info.value)
