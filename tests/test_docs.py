"""Documented options and claims match the code: docs/config.md lists every option of the core and of
every built-in plugin with its default, and every argument of `Client`; the defaults, signatures, sizes
and examples the other pages quote are checked against the code, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from pathlib import Path

import pytest
from docs_text import blocks, pages, rel, section, table_rows
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sei_framework import Client, get_plugin_manager
from sei_framework.config import LimitsConfig, ModelLimitsConfig, StateConfig
from sei_framework.plugins import SeiPlugins

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "config.md"
BUILT_IN = "sei-framework"


def sections() -> dict[str, dict[str, str]]:
    """Each `### title` of docs/config.md: its table rows as {option: default as shown}."""
    found: dict[str, dict[str, str]] = {}
    title = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip() if line.startswith("### ") else None
            if title:
                found[title] = {}
        elif title and (row := re.match(r"^\| `([a-z_]+)` \| ([^|]*) \|", line)):
            found[title][row.group(1)] = row.group(2).strip()
    return found


def shown(field) -> str:
    if field.default_factory is not None:
        return "derived"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return f"`{field.default.model_dump()!r}`"
    return "none" if field.default in (None, [], {}) else f"`{field.default!r}`"


def expected(model: type[BaseModel]) -> dict[str, str]:
    return {name: shown(field) for name, field in model.model_fields.items()}


def built_in_plugins() -> list[tuple[str, str, type[BaseModel]]]:
    plugins: SeiPlugins = get_plugin_manager()
    ours = {info.name for info in plugins.plugin_infos() if info.distribution == BUILT_IN}
    found = []
    for kind, registry in (("model adapter", plugins.model_adapters()), ("key transport", plugins.key_transports()),
                           ("deploy target", plugins.deploy_targets()), ("model source", plugins.model_sources())):  # fmt: skip
        for name in registry.names():
            if registry.entry(name).plugin in ours:
                found.append((kind, name, registry.get(name).Options))
    return found


def test_every_built_in_plugin_is_found():
    names = {name for _, name, _ in built_in_plugins()}
    assert {"sklearn-eiserver", "sklearn-packed", "inline", "local-dir", "azure-blob", "local", "aci", "azureml-online", "azureml"} <= names


@pytest.mark.parametrize("kind, name, options", [(k, n, o) for k, n, o in built_in_plugins()], ids=str)
def test_every_plugin_option_is_documented_with_its_default(kind, name, options):
    documented = sections().get(f"{kind} `{name}`")
    assert documented is not None, f"docs/config.md has no section '### {kind} `{name}`'"
    assert documented == expected(options)


@pytest.mark.parametrize(
    "title, model", [("`limits`", LimitsConfig), ("`state`", StateConfig), ("`models[].limits`", ModelLimitsConfig)]
)
def test_every_core_option_is_documented_with_its_default(title, model):
    assert sections()[title] == expected(model)


@pytest.mark.parametrize("function", [Client.__init__, Client.predict], ids=["Client", "Client.predict"])
def test_every_client_argument_is_documented(function):
    """The `## Client` section shows the signature as the code has it, and a table row for each keyword."""
    text = section(REFERENCE, "## Client")
    name = function.__qualname__.removesuffix(".__init__")
    parameters = list(inspect.signature(function).parameters.values())[1:]  # self
    shown = f"`{name}({', '.join(_shown_parameters(parameters))})`"
    assert shown in " ".join(text.split()), f"docs/config.md lacks {shown}"
    documented = [row[0].strip("`") for row in table_rows(text.split(f"`{name}(")[1].split("\n\n`")[0])]
    assert documented == [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _shown_parameters(parameters: list[inspect.Parameter]) -> list[str]:
    shown: list[str] = []
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in shown:
            shown.append("*")
        default = parameter.default
        shown.append(parameter.name if default is inspect.Parameter.empty else f"{parameter.name}={default!r}")
    return shown


def test_client_batch_defaults_are_the_clients_own():
    """config.md (and the README) give the rows per request a client sends by default: its adapter
    client's own batch, not the service's 64."""
    from sei_adapter_sklearn.eiserver import EIServerClient
    from sei_adapter_sklearn.packed import PackedClient
    from bench.kernel_params import choose_params

    def packed(mode: str) -> int:
        params = choose_params(3, 2, mode)
        readout = {"format": "sei.linear-model/1", "estimator": "LinearRegression", "kind": "regressor",
                   "decision": "multioutput", "proba": None, "classes": None}
        description = {"encryption": {"params": params.to_json()}, "readout": readout, "n_features": 3, "n_outputs": 2}
        return PackedClient(description).max_rows_per_request

    row = next(r for r in table_rows(section(REFERENCE, "## Client")) if r[0] == "`batch_size`")[1]
    claims = {
        "sklearn-eiserver": (EIServerClient.max_rows_per_request, r"(\d+) rows for `sklearn-eiserver`"),
        "sklearn-packed single": (packed("single"), r"(\d+) for `sklearn-packed` single"),
        "sklearn-packed bulk": (packed("bulk"), r"\((\d+) in bulk\)"),
        "concrete-ml": (_concrete_client_batch(), r"(\d+) for `concrete-ml`"),
    }
    for what, (value, pattern) in claims.items():
        found = re.search(pattern, row)
        assert found and int(found.group(1)) == value, f"config.md's batch_size default for {what}: code says {value}"
    readme = (ROOT / "README.md").read_text()
    assert f"# {EIServerClient.max_rows_per_request} rows per request here (sklearn-eiserver)" in readme


def _concrete_client_batch() -> int:
    """ConcreteClient.max_rows_per_request, read from its source: the concrete-ml distribution is
    installed in its own environment, not in the one that runs these tests."""
    import ast

    source = ROOT / "plugins" / "sei-adapter-concrete" / "sei_adapter_concrete" / "client.py"
    tree = ast.parse(source.read_text())
    client = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ConcreteClient")
    for node in client.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["max_rows_per_request"]:
            return ast.literal_eval(node.value)
    raise AssertionError("ConcreteClient sets no max_rows_per_request")


def test_every_path_option_is_listed():
    """config.md's **Paths** list names every built-in plugin option that resolves from the config's folder."""
    listed: set[tuple[str, str]] = set()
    for line in REFERENCE.read_text().split("**Paths.**")[1].split("\n\n")[1].splitlines():
        head, _, fields = line.removeprefix("- ").rpartition(": ")
        names = re.findall(r"`([a-z-]+)`", re.sub(r"\(.*\)", "", head))
        listed |= {(n, f) for n in names for f in re.findall(r"`([a-z_]+)`", fields)}
    plugins: SeiPlugins = get_plugin_manager()
    ours = {info.name for info in plugins.plugin_infos() if info.distribution == BUILT_IN}
    paths = set()
    for registry in (plugins.model_adapters(), plugins.key_transports(), plugins.deploy_targets(), plugins.model_sources()):
        for name in registry.names():
            if registry.entry(name).plugin in ours:
                for field, info in registry.get(name).Options.model_fields.items():
                    if "_resolve" in repr(info.annotation) + repr(info.metadata):  # a ConfigPath
                        paths.add((name, field))
    assert ("sklearn-eiserver", "calibration_data") in paths
    assert listed == paths


def test_packed_backend_options_table_agrees_with_the_reference():
    """packed-backend.md's option table has the options and defaults config.md (and the code) have."""
    from sei_adapter_sklearn.packed import PackedAdapter

    page = ROOT / "docs" / "packed-backend.md"
    text = page.read_text().split("**Options**")[1].split("\n\n")[1]
    shown_there = {row[0].strip("`"): row[1] for row in table_rows(text)}
    assert shown_there == {name: value for name, value in expected(PackedAdapter.Options).items()}


def test_request_size_is_shown_with_every_field():
    from sei_framework import RequestSize

    fields = ", ".join(
        f.name if f.default is dataclasses.MISSING else f"{f.name}={f.default!r}" for f in dataclasses.fields(RequestSize)
    )
    text = " ".join((ROOT / "docs" / "plugins.md").read_text().split())
    assert f"`sei_framework.RequestSize({fields})`" in text


def test_bulk_shard_size_is_quoted_as_the_code_has_it():
    from sei_framework.batch.encrypt import SHARD_BYTES

    mb = SHARD_BYTES / 2**20
    for page in ("azure.md", "batch.md"):
        text = " ".join((ROOT / "docs" / page).read_text().split())
        assert f"about {mb:g} MB" in text, page
    assert "bulk holds 4,096 rows (one request's worth)" not in (ROOT / "docs" / "azure.md").read_text()


def test_concrete_example_limits_admit_every_measured_model():
    """concrete.md's example limits take the key sets the README measured (keys + expanded, MiB)."""
    import yaml

    from sei_framework import RequestSize
    from sei_framework.limits import check_key_limits

    readme = " ".join((ROOT / "README.md").read_text().split())
    measured = re.search(r"\(tree (\d+) \+ (\d+) MB, forest (\d+) \+ (\d+) MB, MLP (\d+) \+ ([\d,]+) MB\)", readme)
    assert measured, "the README's key memory figures moved"
    figures = [int(v.replace(",", "")) for v in measured.groups()]
    example = next(b for b in blocks(ROOT / "docs" / "concrete.md") if b.lang == "yaml" and "limits:" in b.text)
    limits = LimitsConfig(**yaml.safe_load(example.text)["limits"])
    for keys, expanded in zip(figures[::2], figures[1::2], strict=True):
        size = RequestSize(batch_bytes=1, key_bytes=keys * 2**20, key_memory_bytes=(keys + expanded) * 2**20)
        check_key_limits("model", size, limits)  # BuildError if the example would refuse it
    assert "tens of MB" not in (ROOT / "docs" / "concrete.md").read_text()


def test_bench_concrete_command_is_quoted_with_the_rows_it_ran():
    """The README quotes `make bench-concrete`'s default rows and the rows its table was made with."""
    default = re.search(r'add_argument\("--rows", type=int, default=(\d+)\)', (ROOT / "bench" / "concrete.py").read_text())
    makefile = (ROOT / "Makefile").read_text().split("\nbench-concrete:")[1].split("\n\n")[0]
    assert default and "--rows" not in makefile
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"-m bench.concrete`, {default.group(1)} rows per figure by default; the table below came from the same command with `--rows 2`" in readme
    assert "Medians of two rows per figure" in readme


def test_user_pages_say_what_sei_serves_and_no_repository_jargon():
    for page in pages():
        text = page.read_text()
        assert not re.search(r"\bHEAD\b", text), f"{rel(page)} says HEAD"
        assert "~/.sei/keys" not in text, f"{rel(page)}: keys live in $SEI_HOME/keys (the Makefile sets SEI_HOME)"
    assert "SEI serves a linear model" not in (ROOT / "docs" / "security.md").read_text()


def test_keys_live_where_the_docs_say():
    from sei_framework.keys import sei_home

    assert re.search(r"^export SEI_HOME \?= \$\(CURDIR\)/\.sei$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert "the Makefile sets it to the clone's own `.sei/`" in " ".join((ROOT / "README.md").read_text().split())
    assert str(sei_home()) == os.environ["SEI_HOME"]


def test_the_tutorial_mapping_is_one_table():
    def mapping(text: str) -> str:
        start = text.index("| the tutorial | SEI |")
        return text[start : text.index("\n\n", start)]

    assert mapping((ROOT / "README.md").read_text()) == mapping((ROOT / "docs" / "azure.md").read_text())


def test_every_extra_named_in_the_docs_exists():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for page in pages():
        for named in re.findall(r"sei-framework\[([a-z,-]+)\]", page.read_text()):
            assert set(named.split(",")) <= extras, f"{rel(page)} names the extra [{named}]"


def test_the_describe_example_has_the_fields_a_service_answers(make_deployment, tmp_path):
    """protocol.md's `describe` answer has the keys a real service's answer has, at every level shown;
    and both scikit-learn clients refuse a row outside the bounds before sending it (input_out_of_bounds)."""
    import json

    import numpy as np

    from sei_framework import InvalidRequest
    from sei_framework.serving import ScoringService

    shown = json.loads(next(b.text for b in blocks(ROOT / "docs" / "protocol.md") if b.lang == "json" and '"service"' in b.text))
    service = ScoringService.from_build(make_deployment(models=("digits",)).build(tmp_path / "build").path)
    real = service.describe()
    assert set(shown) == set(real)
    assert set(shown["limits"]) == set(real["limits"]) and set(shown["state"]) == set(real["state"])
    model, real_model = shown["models"]["digits"], real["models"]["digits"]
    assert set(model) == set(real_model)
    for key in ("readout", "encryption", "accuracy", "limits"):
        assert set(model[key]) == set(real_model[key]), key
    assert model["limits"] == real_model["limits"] and model["n_features"] == real_model["n_features"]
    packed = ScoringService.from_build(make_deployment(models=("digits",), adapter="sklearn-packed", name="p").build(tmp_path / "p").path)
    for svc in (service, packed):
        client = svc.adapters["digits"].client(svc.describe()["models"]["digits"])
        with pytest.raises(InvalidRequest) as refused:
            client.encrypt(np.full((1, 64), 5.0))
        assert refused.value.code == "input_out_of_bounds"


def test_protocol_names_only_built_in_key_transports():
    """protocol.md describes what each built-in transport adds to a request; a test fixture's is not one."""
    plugins: SeiPlugins = get_plugin_manager()
    ours = {info.name for info in plugins.plugin_infos() if info.distribution == BUILT_IN}
    transports = plugins.key_transports()
    built_in = {name for name in transports.names() if transports.entry(name).plugin in ours}
    text = (ROOT / "docs" / "protocol.md").read_text()
    bullet = text.split("- Key transport fields:")[1].split("\n\n")[0]
    named = {n for n in re.findall(r"`([a-z-]+)`", bullet)} - {"public_keys", "key_sas_url"}
    assert named and named <= built_in, f"protocol.md names transports that are not built in: {named - built_in}"


def test_the_readme_config_reference_is_valid_and_shows_the_defaults(tmp_path):
    """The README's annotated config validates (both phases), and its limits, state and local options
    are the defaults it says they are."""
    import yaml
    from sei_deploy_local.target import LocalTarget

    from sei_framework.config import parse_config, resolve_config

    block = next(b for b in blocks(ROOT / "README.md") if b.lang == "yaml" and "limits:" in b.text)
    assert "(defaults shown)" in block.text
    data = yaml.safe_load(block.text)
    resolve_config(parse_config(data, base_dir=tmp_path), get_plugin_manager(), check_files=False)
    assert data["limits"] == LimitsConfig().model_dump()
    assert data["state"] == StateConfig().model_dump()
    shown = data["deploy"]["options"]
    assert shown == {k: v for k, v in LocalTarget.Options().model_dump().items() if k in shown}
