"""Every `sei ...` command the docs show parses with the real click CLI: the commands and flags exist,
the configs it names are in the repository, and the commands that cannot work as written are caught
(a `sei predict` that would stop at untrusted_key_transport, a `sei bench` on models of different widths)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml
from docs_text import ROOT, blocks, pages, rel

from sei_framework.cli import cli

SHELLS = {"sh", "bash", "shell", "console"}


def shell_commands() -> list[tuple[str, str, str]]:
    """(where, the `sei` command line, the whole block) for each `sei` line of a shell block."""
    found = []
    for page in pages():
        for block in blocks(page):
            if block.lang not in SHELLS:
                continue
            joined = re.sub(r"\\\n\s*", " ", block.text)  # continuation lines
            for n, line in enumerate(joined.splitlines()):
                line = line.strip().removeprefix("$ ")
                if line.startswith("sei "):
                    found.append((f"{block}+{n}", line, joined))
    return found


def inline_commands() -> list[tuple[str, str]]:
    """(page, command) for each `sei ...` in backticks in the prose."""
    found = []
    for page in pages():
        text = page.read_text()
        for match in re.finditer(r"`(sei [^`]+)`", text):
            found.append((rel(page), match.group(1)))
    return found


def words(line: str) -> list[str]:
    return shlex.split(line, comments=True)[1:]


def resolve(args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """The sub-command path, the click command and its own arguments."""
    command: click.Command = cli
    path = ["sei"]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        assert args[0] in command.commands, f"`{' '.join(path)}` has no command {args[0]!r}"
        command = command.commands[args[0]]
        path.append(args.pop(0))
    return path, command, args


def placeholders(args: list[str], folder: Path) -> None:
    """Files and folders the command names, made in `folder` (they are the reader's, not the repo's)."""
    for arg in args:
        if arg.startswith(("-", "$")) or "://" in arg:
            continue
        target = folder / arg
        if arg.endswith("/") or not Path(arg).suffix:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("")


COMMANDS = shell_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 15 and len(inline_commands()) >= 15


@pytest.mark.parametrize("where, line, block", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_shown_command_parses(where, line, block, tmp_path, monkeypatch):
    path, command, args = resolve(words(line))
    for arg in args:
        if arg.startswith("configs/"):
            assert config_shown(where.split(":")[0], arg) is not None, (
                f"{where}: {arg} is neither in the repository nor shown"
            )
    monkeypatch.chdir(tmp_path)
    placeholders(args, tmp_path)
    with command.make_context(path[-1], list(args)) as ctx:  # raises on an unknown flag or a missing value
        assert ctx.command is command


@pytest.mark.parametrize("page, line", inline_commands(), ids=[f"{p}:{c}" for p, c in inline_commands()])
def test_every_command_in_the_prose_names_real_flags(page, line):
    path, command, args = resolve(shlex.split(line)[1:])
    known = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts] if isinstance(p, click.Option)}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in known, f"{page}: `{line}`: {' '.join(path)} has no {arg}"
    if any(isinstance(p, click.Argument) and p.required for p in command.params) and not args:
        return  # the prose names the command alone
    for arg in args:
        if arg.startswith("configs/"):
            assert config_shown(page, arg) is not None, f"{page}: {arg} is neither in the repository nor shown"


def config_shown(page: str, config: str) -> dict | None:
    """The config a command names: the repository's file, or the YAML block of `page` whose `name` is
    the file's stem (a config the reader writes as the page shows it)."""
    if (ROOT / config).is_file():
        return yaml.safe_load((ROOT / config).read_text())
    shown = [yaml.safe_load(b.text) for b in blocks(ROOT / page) if b.lang == "yaml"]
    return next((d for d in shown if isinstance(d, dict) and d.get("name") == Path(config).stem), None)


def transport_of(page: str, config: str) -> str:
    data = config_shown(page, config)
    assert data is not None, f"{page}: {config} is neither in the repository nor shown"
    return (data.get("key_transport") or {}).get("name", "inline")


PREDICTS = [c for c in COMMANDS if c[1].startswith("sei predict")]
BENCHES = [c for c in COMMANDS if c[1].startswith("sei bench")]


@pytest.mark.parametrize("where, line, block", PREDICTS, ids=[c[0] for c in PREDICTS])
def test_predict_commands_configure_a_key_transport_the_client_accepts(where, line, block):
    """A service whose transport uses the client's files or credentials is refused
    (untrusted_key_transport) unless --config names the user's own; `inline` needs nothing."""
    args, page = words(line), where.split(":")[0]
    if "--config" in args or "--trust-service-transport" in args:
        config = args[args.index("--config") + 1] if "--config" in args else None
        assert config is None or config_shown(page, config) is not None
        return
    deployed = re.findall(r"sei deploy (\S+\.ya?ml)", block)
    assert deployed, f"{where}: `{line}` names no --config and its block deploys no config"
    assert all(transport_of(page, c) == "inline" for c in deployed), (
        f"{where}: `{line}` needs --config: the service's key transport is not inline"
    )


@pytest.mark.parametrize("where, line, block", BENCHES, ids=[c[0] for c in BENCHES])
def test_bench_commands_name_configs_whose_models_take_the_same_rows(where, line, block):
    """`sei bench CONFIG --input ROWS` sends the same rows to every model of CONFIG."""
    config = words(line)[1]
    shown = config_shown(where.split(":")[0], config)
    assert shown is not None, f"{where}: {config} is neither in the repository nor shown"
    models = shown["models"]
    assert len({m["path"] for m in models}) == 1, f"{where}: the models of {config} read different model files"


def test_every_make_target_and_bench_module_named_exists():
    """`make TARGET` and `python -m bench.NAME` in the docs name what the Makefile and bench/ hold."""
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    named_targets, named_modules = set(), set()
    for page in pages():
        text = page.read_text()
        named_targets |= set(re.findall(r"(?:`|^\s*)make ([a-z][a-z0-9-]*)\b", text, re.MULTILINE))
        named_modules |= set(re.findall(r"-m (bench\.[a-z_]+)", text))
    assert {"demo", "test", "bench"} <= named_targets
    assert named_targets <= targets, f"no such make targets: {sorted(named_targets - targets)}"
    for module in named_modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
