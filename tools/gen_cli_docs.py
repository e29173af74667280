"""Write docs/cli.md from the `sei` click commands themselves, so the reference cannot drift.

python tools/gen_cli_docs.py           # rewrite docs/cli.md
python tools/gen_cli_docs.py --check   # exit 1 if docs/cli.md is not what the commands say
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

HEADER = """# `sei` command reference

Generated from the click commands by `python tools/gen_cli_docs.py`; do not edit by hand
(`tests/test_docs_cli.py` fails when this page and the commands differ).
Every command prints an error as one line on stderr; the exit code is 2 for `invalid_config`, 3 for a
request the client refuses as invalid and 1 for any other error ([troubleshooting.md](troubleshooting.md)).
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _option_row(param: click.Option) -> str:
    shown_default = param.to_info_dict().get("default")  # None when unset, on every click version
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    if param.is_flag:
        kind = "flag"
    else:
        kind = param.type.name.lower() if not isinstance(param.type, click.Choice) else " \\| ".join(param.type.choices)
        kind = kind + (", repeatable" if param.multiple else "")
    if param.required:
        default = "required"
    elif param.is_flag or shown_default is None or param.multiple:
        default = ""
    else:
        default = f"`{shown_default}`"
    return f"| {names} | {kind} | {default} | {_cell(param.help or '')} |"


def _command(path: list[str], command: click.Command) -> list[str]:
    ctx = click.Context(command, info_name=path[-1])
    usage = " ".join([*path, *command.collect_usage_pieces(ctx)])
    lines = [f"## `{' '.join(path)}`", "", "```", usage, "```", ""]
    if command.help:
        lines += [inspect.cleandoc(command.help).replace("\b\n", ""), ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if arguments:
        lines += ["Arguments: " + ", ".join(f"`{p.human_readable_name}`" for p in arguments) + ".", ""]
    options = [p for p in command.params if isinstance(p, click.Option)]
    if options:
        lines += ["| option | value | default | what it does |", "| --- | --- | --- | --- |"]
        lines += [_option_row(p) for p in options] + [""]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            lines += _command([*path, name], command.commands[name])
    return lines


def render() -> str:
    """The whole reference page for the `sei` group as it is defined now."""
    from sei_framework.cli import cli

    return HEADER + "\n" + "\n".join(_command(["sei"], cli)).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run python tools/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
