"""The pages that summarise others quote only what was measured, and the README links every page."""

from __future__ import annotations

import re

from docs_text import ROOT, pages, rel

FIGURE = r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+"


def test_choosing_an_adapter_quotes_only_measured_figures():
    """Every figure in the comparison table is one the README or concrete.md reports with its command,
    or one the page's own sources section measured (with its command)."""
    text = (ROOT / "docs" / "choosing-an-adapter.md").read_text()
    table, sources = text.split("Rules of thumb")[0], text.split("## Where the figures come from")[1]
    measured = (ROOT / "README.md").read_text() + (ROOT / "docs" / "concrete.md").read_text() + sources
    figures = set(re.findall(FIGURE, table))
    assert len(figures) > 10
    assert not sorted(f for f in figures if f not in measured), "figures with no measurement behind them"
    for command in ("make bench", "-m bench.concrete --rows 2", "du -sck"):
        assert command in sources


def test_choosing_an_adapter_names_every_built_in_adapter():
    """Every adapter of the sei-framework distribution is a column, and so is concrete-ml (a distribution of its own)."""
    from sei_framework import get_plugin_manager

    plugins = get_plugin_manager()
    ours = {info.name for info in plugins.plugin_infos() if info.distribution == "sei-framework"}
    adapters = plugins.model_adapters()
    built_in = {name for name in adapters.names() if adapters.entry(name).plugin in ours}
    header = (ROOT / "docs" / "choosing-an-adapter.md").read_text().split("\n| --- |")[0].splitlines()[-1]
    assert set(re.findall(r"`([a-z-]+)`", header)) == built_in | {"concrete-ml"}


def test_the_readme_links_every_page():
    readme = (ROOT / "README.md").read_text()
    for page in pages(generated=True)[1:]:
        assert f"]({rel(page)})" in readme, f"README.md does not link {rel(page)}"
    assert "](CHANGELOG.md)" in readme and (ROOT / "CHANGELOG.md").is_file()


def test_every_relative_link_resolves():
    for page in [*pages(generated=True), ROOT / "CHANGELOG.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{rel(page)} links {target}, which does not exist"
