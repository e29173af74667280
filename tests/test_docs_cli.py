"""docs/cli.md is what tools/gen_cli_docs.py writes from the click commands as they are now."""

from __future__ import annotations

import runpy

from docs_text import ROOT

GENERATOR = ROOT / "tools" / "gen_cli_docs.py"


def test_the_cli_reference_is_current():
    render = runpy.run_path(str(GENERATOR))["render"]
    assert (ROOT / "docs" / "cli.md").read_text() == render(), "docs/cli.md is stale: run python tools/gen_cli_docs.py"


def test_the_cli_reference_names_every_command():
    from sei_framework.cli import cli

    text = (ROOT / "docs" / "cli.md").read_text()
    for name, command in cli.commands.items():
        assert f"## `sei {name}`" in text
        for sub in getattr(command, "commands", {}):
            assert f"## `sei {name} {sub}`" in text
