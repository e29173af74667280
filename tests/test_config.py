"""Config files: every example validates; mistakes are reported with the path to the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sei_framework import ConfigError, get_plugin_manager
from sei_framework.cli import cli
from sei_framework.config import load_config, parse_config, resolve_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_example_configs():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_validates(path):
    config = load_config(path)
    resolved = resolve_config(config, get_plugin_manager(), check_files=False)
    assert [m.config.name for m in resolved.models] == [m.name for m in config.models]
    assert resolved.plugins, "a config always names the plugins a service must load"


def problems_of(data: dict, tmp_path: Path, *, plugins=True) -> list[str]:
    with pytest.raises(ConfigError) as error:
        config = parse_config(data, base_dir=tmp_path)
        if plugins:
            resolve_config(config, get_plugin_manager())
    return error.value.problems


def good(tmp_path: Path, **changes) -> dict:
    model = tmp_path / "m.joblib"
    model.write_bytes(b"")
    data = {"name": "svc", "models": [{"name": "a", "adapter": "sklearn-eiserver", "path": str(model)}]}
    data.update(changes)
    return data


def test_good_config_resolves_with_defaults(tmp_path):
    resolved = resolve_config(parse_config(good(tmp_path), base_dir=tmp_path), get_plugin_manager())
    assert resolved.transport.name == "inline" and resolved.target.name == "local"
    assert resolved.plugins == ["sei_adapter_sklearn", "sei_deploy_local", "sei_transport_inline"]


def test_core_schema_errors_name_the_field(tmp_path):
    data = good(tmp_path)
    data["models"][0]["name"] = "Bad Name!"
    data["models"].append({"name": "b", "adapter": "sklearn-eiserver"})
    data["limits"] = {"max_rows_per_request": 0}
    data["colour"] = "blue"
    problems = problems_of(data, tmp_path, plugins=False)
    assert any(p.startswith("models[0].name: String should match pattern") for p in problems)
    assert "models[1].path: Field required" in problems
    assert any(p.startswith("limits.max_rows_per_request: Input should be greater than or equal to 1") for p in problems)
    assert "colour: Extra inputs are not permitted" in problems


def test_duplicate_model_names_are_refused(tmp_path):
    data = good(tmp_path)
    data["models"].append(dict(data["models"][0]))
    assert any("repeated: a" in p for p in problems_of(data, tmp_path, plugins=False))


def test_plugin_options_are_validated_by_each_plugin(tmp_path):
    data = good(
        tmp_path,
        key_transport={"name": "local-dir", "options": {"pth": "/tmp/keys"}},
        deploy={"target": "local", "options": {"port": "eighty"}},
    )
    data["models"][0]["options"] = {"trusted_types": "sklearn.Foo"}
    problems = problems_of(data, tmp_path)
    assert "models[0].options.trusted_types: Input should be a valid list" in problems
    assert "key_transport.options.path: Field required" in problems
    assert "key_transport.options.pth: Extra inputs are not permitted" in problems
    assert any(p.startswith("deploy.options.port: Input should be a valid integer") for p in problems)


def test_unknown_plugin_and_missing_file(tmp_path):
    data = good(tmp_path, deploy={"target": "moon"})
    data["models"][0].update(adapter="sklearn-magic", path=str(tmp_path / "nope.pkl"))
    problems = problems_of(data, tmp_path)
    assert any(p.startswith("models[0].adapter: unknown model adapter 'sklearn-magic'; available: sklearn-eiserver, sklearn-packed") for p in problems)
    assert f"models[0].path: no such file: {tmp_path / 'nope.pkl'}" in problems
    assert any(p.startswith("deploy.target: unknown deploy target 'moon'; available:") for p in problems)


def test_relative_model_paths_resolve_from_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "svc", "models": [{"name": "a", "adapter": "x", "path": "../m.pkl"}]}))
    assert load_config(path).models[0].path == tmp_path / "m.pkl"


@pytest.mark.parametrize(
    "text, message",
    [("name: [unclosed", "is not valid YAML"), ("- a\n- b\n", "expected a mapping at the top level, got list")],
)
def test_unreadable_configs(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_cli_validate_reports_field_paths_and_exit_code(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(good(tmp_path, key_transport={"name": "local-dir"})))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "key_transport.options.path: Field required" in result.output
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(good(tmp_path)))
    result = CliRunner().invoke(cli, ["validate", str(ok)])
    assert result.exit_code == 0, result.output
    assert "ok; models: a (sklearn-eiserver)" in result.output


def test_a_relative_key_folder_becomes_absolute_so_client_and_service_agree(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the base directory: the working folder must not matter
    data = good(tmp_path, key_transport={"name": "local-dir", "options": {"path": "keys"}})
    resolved = resolve_config(parse_config(data, base_dir=tmp_path / "cfg"), get_plugin_manager())
    assert resolved.transport_options.path == tmp_path / "cfg" / "keys"


def write_config(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_relative_path_in_a_config_resolves_from_its_folder(tmp_path, monkeypatch):
    """One rule: model paths and every plugin's path options, whatever the working folder."""
    cfg = tmp_path / "project" / "configs"
    path = write_config(cfg / "svc.yaml", {
        "name": "svc",
        "models": [{"name": "a", "adapter": "sklearn-packed", "path": "../models/m.joblib",
                    "options": {"calibration_data": "data/train.npy"}}],
        "key_transport": {"name": "local-dir", "options": {"path": "../keys"}},
        "deploy": {"target": "local", "options": {"state_dir": "state", "python": "../.venv/bin/python"}},
    })  # fmt: skip
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    resolved = resolve_config(load_config(path), get_plugin_manager(), check_files=False)
    assert resolved.models[0].source == tmp_path / "project" / "models" / "m.joblib"
    assert resolved.models[0].options.calibration_data == cfg / "data" / "train.npy"
    assert resolved.transport_options.path == tmp_path / "project" / "keys"
    assert resolved.target_options.state_dir == cfg / "state"
    assert resolved.target_options.python == tmp_path / "project" / ".venv" / "bin" / "python"


def test_azure_path_options_resolve_from_the_config_folder(tmp_path, monkeypatch):
    cfg = tmp_path / "configs"
    aci = {"workspace_config": "config.json", "ssl_enabled": True, "ssl_cert_pem_file": "certs/c.pem",
           "ssl_key_pem_file": "~/k.pem", "ssl_cname": "scoring.example.com"}  # fmt: skip
    path = write_config(cfg / "aci.yaml", good(tmp_path, deploy={"target": "aci", "options": aci}))
    monkeypatch.chdir(tmp_path)
    options = resolve_config(load_config(path), get_plugin_manager()).target_options
    assert options.workspace_config == cfg / "config.json"
    assert options.ssl_cert_pem_file == cfg / "certs" / "c.pem"
    assert options.ssl_key_pem_file == Path("~/k.pem").expanduser()  # ~ and absolute paths as they are
    online = write_config(cfg / "online.yaml", good(tmp_path, deploy={"target": "azureml-online",
                                                                      "options": {"workspace_config": "ws.json"}}))
    assert resolve_config(load_config(online), get_plugin_manager()).target_options.workspace_config == cfg / "ws.json"


def test_options_built_in_code_resolve_from_the_working_folder(tmp_path, monkeypatch):
    from sei_transport_local_dir import LocalDirOptions

    monkeypatch.chdir(tmp_path)
    assert LocalDirOptions(path="keys").path == tmp_path / "keys"
    assert LocalDirOptions(path="/srv/keys").path == Path("/srv/keys")


def test_calibration_data_resolves_from_the_config_folder_in_a_build(tmp_path, monkeypatch):
    """Not from the model file (the old rule) nor the working folder; the build records the absolute path."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from sei_framework import Deployment

    model = LinearRegression().fit(np.random.default_rng(0).uniform(0, 50, (40, 3)), np.arange(40.0))
    (tmp_path / "models").mkdir()
    joblib.dump(model, tmp_path / "models" / "m.joblib")
    cfg = tmp_path / "configs"
    (cfg / "data").mkdir(parents=True)
    np.save(cfg / "data" / "train.npy", np.random.default_rng(1).uniform(0, 50, (40, 3)))
    (tmp_path / "models" / "data").mkdir()  # where the old rule looked: a file that does not fit the model
    np.save(tmp_path / "models" / "data" / "train.npy", np.ones((4, 7)))
    path = write_config(cfg / "svc.yaml", {
        "name": "svc",
        "models": [{"name": "m", "adapter": "sklearn-packed", "path": "../models/m.joblib",
                    "options": {"calibration_data": "data/train.npy"}}],
    })  # fmt: skip
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    built = Deployment.from_file(path).build(tmp_path / "build")
    spec = built.manifest["models"][0]
    assert spec["metadata"]["accuracy"]["bounds_from"] == "calibration_data"
    assert spec["options"]["calibration_data"] == str(cfg / "data" / "train.npy")
