"""Error codes: every code the code defines is explained in docs/troubleshooting.md, every code a
service or client can produce is in protocol.md (or azure.md for the azure-blob transport's own), and
every code those pages name exists in the code."""

from __future__ import annotations

import re

from docs_text import ROOT, table_rows

SOURCES = ("sei_framework", "plugins", "score_template")
PATTERNS = (
    r'\bcode(?:\s*:\s*str)?\s*=\s*"([a-z_]+)"',  # code="x", code = "x" (a class), code: str = "x" (a default)
    r'"code":\s*"([a-z_]+)"',  # a JSON error body written out
    r'\b[1-5]\d\d,\s*"([a-z_]+)"',  # status, code: the local target's HTTP layer
    r'return "([a-z_]+)", ',  # (code, message) pairs of the HTTP layer
)
JS_SOURCES = ("clients/js/src",)
JS_PATTERN = r",\s*'([a-z_]+)'(?:,\s*[\w.]+)?\)"  # new SeiError(message, 'code') or (message, 'code', status)
# Raised on the machine that runs `sei`/the build, never answered by a service.
LOCAL_ONLY = {
    "sei_error", "invalid_config", "plugin_load_error", "plugin_error", "unknown_plugin", "duplicate_plugin",
    "build_error", "deploy_error", "batch_error", "missing_dependency", "unusable_keys", "model_file_error",
    "missing_extra", "bad_frame",
}  # fmt: skip


def defined_codes() -> dict[str, set[str]]:
    """Every error code in the source: {code: files that set it}."""
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in (ROOT / root).rglob("*.py"):
            if "tests" in path.relative_to(ROOT).parts:
                continue
            text = path.read_text()
            for pattern in PATTERNS:
                for match in re.finditer(pattern, text):
                    found.setdefault(match.group(1), set()).add(str(path.relative_to(ROOT)))
    for root in JS_SOURCES:  # the browser client raises the Python client's codes, and its own
        for path in (ROOT / root).rglob("*.js"):
            for match in re.finditer(JS_PATTERN, path.read_text()):
                found.setdefault(match.group(1), set()).add(str(path.relative_to(ROOT)))
    return found


def documented_codes(page: str) -> set[str]:
    """Codes in the first column of the page's tables (`a` / `b` cells hold two)."""
    text = (ROOT / "docs" / page).read_text()
    return {code for row in table_rows(text) for code in re.findall(r"`([a-z_]+)`", row[0])}


def named_codes(page: str) -> set[str]:
    """Every backticked lower-case word of the page, tables and prose alike."""
    return set(re.findall(r"`([a-z_]+)`", (ROOT / "docs" / page).read_text()))


def test_the_scan_finds_codes_of_every_kind():
    codes = defined_codes()
    for code in ("invalid_config", "unknown_model", "busy", "uri_too_long", "key_sas_expired", "score_out_of_range",
                 "invalid_key_sas_url", "internal_error", "unauthorized", "rejected_input"):  # fmt: skip
        assert code in codes, code
    assert "clients/js/src/seal.js" in codes["unsupported_browser"]  # the JS client's own
    assert "clients/js/src/readout.js" in codes["score_out_of_range"]


def test_every_defined_code_is_in_troubleshooting():
    missing = set(defined_codes()) - documented_codes("troubleshooting.md")
    assert not missing, f"docs/troubleshooting.md does not explain: {sorted(missing)}"


def test_troubleshooting_names_no_code_the_code_lacks():
    assert documented_codes("troubleshooting.md") <= set(defined_codes())


def test_every_code_a_service_or_client_gives_is_in_the_protocol():
    wire = set(defined_codes()) - LOCAL_ONLY
    documented = named_codes("protocol.md") | documented_codes("azure.md")
    missing = wire - documented
    assert not missing, f"docs/protocol.md (or azure.md's transport codes) does not name: {sorted(missing)}"


def test_every_code_in_the_protocol_exists():
    codes = set(defined_codes())
    tabled = documented_codes("protocol.md")
    assert tabled, "protocol.md has no error tables"
    assert tabled <= codes, f"protocol.md's tables name codes the code lacks: {sorted(tabled - codes)}"
    prose = set(re.findall(r"`([a-z]+_[a-z_]+)` \(", (ROOT / "docs" / "protocol.md").read_text()))
    assert prose <= codes, f"protocol.md describes codes the code lacks: {sorted(prose - codes)}"


def test_client_score_and_bound_checks_belong_to_both_scikit_learn_adapters():
    """protocol.md says both adapters' clients raise score_out_of_range and input_out_of_bounds; both
    clients use the checks that raise them (tests/test_docs.py sees input_out_of_bounds raised by each)."""
    from sei_adapter_sklearn import bounds, eiserver, packed

    for module in (eiserver, packed):
        assert module.check_scores is bounds.check_scores and module.check_described_rows is bounds.check_described_rows
    text = " ".join((ROOT / "docs" / "protocol.md").read_text().split())
    assert "for both scikit-learn adapters (`sklearn-eiserver` and `sklearn-packed`) `score_out_of_range`" in text
