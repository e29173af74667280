"""`sei bench`: every model of a config measured side by side in one run, on this machine.

Per model: server compute per prediction, end-to-end p50/p95 through the config's deployment
(its own deploy target: `local` serves on this machine; `--e2e-requests 0` skips it),
request/response/key bytes, bulk throughput, client costs, and agreement with plaintext.
Writes bench.json and bench.png into the output folder and returns the report.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .deployment import Deployment
from .errors import BuildError
from .extras import install_hint
from .keys import Keyring, key_id_for
from .serving import ScoringService

__all__ = ["ModelFigures", "run_bench", "format_table", "write_chart"]

T = TypeVar("T")


@dataclass
class ModelFigures:
    model: str
    adapter: str
    server_ms: float
    e2e_p50_ms: float
    e2e_p95_ms: float
    request_bytes: int
    response_bytes: int
    key_bytes: int
    bulk_rows: int
    bulk_rows_per_s: float
    bulk_request_bytes_per_row: float
    bulk_response_bytes_per_row: float
    bulk_batch_rows: int
    bulk_encrypt_ms_per_row: float
    bulk_decrypt_ms_per_row: float
    keygen_s: float
    encrypt_ms_per_row: float
    decrypt_ms_per_row: float
    rows_checked: int
    agreement: float
    max_abs_error: float


def _json_size(body: dict[str, Any]) -> int:
    return len(json.dumps(body, separators=(",", ":")).encode())


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def _timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Seconds `fn(*args)` takes, and its result (arguments bound now: no closure over a loop variable)."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _agreement(predicted: np.ndarray, expected: np.ndarray) -> float:
    """Share of equal predictions: labels exactly, regression values within 1e-3."""
    if np.issubdtype(expected.dtype, np.floating):
        return float(np.mean(np.isclose(predicted, expected, rtol=0, atol=1e-3)))
    return float(np.mean(predicted == expected))


def _in_process(service: ScoringService, name: str, X: np.ndarray, repeats: int, bulk_budget_s: float) -> dict[str, Any]:
    """Server compute, bytes, client costs and agreement, without HTTP in the way."""
    adapter = service.adapters[name]
    client = type(adapter).client(service.describe()["models"][name])
    keygen_s, (secret, public) = _timed(client.generate_keys)
    client.use_keys(secret, public)
    keys = adapter.load_public_keys(public)
    key_id = key_id_for(public)

    server_s, request_bytes, response_bytes, encrypt_s, decrypt_s = [], [], [], [], []
    scores = []
    for i in range(repeats):
        row = X[i % len(X)][None, :]
        seconds, data = _timed(client.encrypt, row)
        encrypt_s.append(seconds)
        seconds, result = _timed(adapter.predict, data, keys)
        server_s.append(seconds)
        request_bytes.append(_json_size({"model": name, "key_id": key_id, "data": data}))
        response_bytes.append(_json_size({"model": name, "key_id": key_id, "result": result}))
        seconds, decrypted = _timed(client.decrypt, result, 1)
        decrypt_s.append(seconds)
        if i < len(X):
            scores.append(decrypted)

    done = bulk_start = len(scores)
    bulk = {"server": 0.0, "encrypt": 0.0, "decrypt": 0.0, "request": 0, "response": 0}
    batch = client.max_rows_per_request
    deadline = time.perf_counter() + bulk_budget_s
    while done < len(X) and (done == bulk_start or time.perf_counter() < deadline):
        rows = X[done : done + batch]
        seconds, data = _timed(client.encrypt, rows)
        bulk["encrypt"] += seconds
        seconds, result = _timed(adapter.predict, data, keys)
        bulk["server"] += seconds
        bulk["request"] += _json_size({"model": name, "key_id": key_id, "data": data})
        bulk["response"] += _json_size({"model": name, "key_id": key_id, "result": result})
        seconds, decrypted = _timed(client.decrypt, result, len(rows))
        bulk["decrypt"] += seconds
        scores.append(decrypted)
        done += len(rows)
    bulk_rows = max(done - bulk_start, 1)

    decrypted = np.vstack(scores)
    reference = adapter.reference_scores(X[:done])
    agreement, error = float("nan"), float("nan")
    if reference is not None:
        reference = np.asarray(reference).reshape(decrypted.shape)
        error = float(np.abs(decrypted - reference).max())
        agreement = _agreement(client.interpret(decrypted).predictions, client.interpret(reference).predictions)
    return {
        "adapter": adapter.name,
        "server_ms": statistics.median(server_s) * 1000,
        "request_bytes": int(statistics.median(request_bytes)),
        "response_bytes": int(statistics.median(response_bytes)),
        "key_bytes": len(public),
        "bulk_rows": done - bulk_start,
        "bulk_rows_per_s": bulk_rows / bulk["server"] if bulk["server"] else float("nan"),
        "bulk_request_bytes_per_row": bulk["request"] / bulk_rows,
        "bulk_response_bytes_per_row": bulk["response"] / bulk_rows,
        "bulk_batch_rows": batch,
        "bulk_encrypt_ms_per_row": bulk["encrypt"] / bulk_rows * 1000,
        "bulk_decrypt_ms_per_row": bulk["decrypt"] / bulk_rows * 1000,
        "keygen_s": keygen_s,
        "encrypt_ms_per_row": statistics.median(encrypt_s) * 1000,
        "decrypt_ms_per_row": statistics.median(decrypt_s) * 1000,
        "rows_checked": done,
        "agreement": agreement,
        "max_abs_error": error,
    }


def _end_to_end(deployment: Deployment, names: list[str], X: np.ndarray, requests: int, folder: Path) -> dict[str, list[float]]:
    """Single-row request latencies through the config's own deploy target; none when `requests` is 0."""
    if requests <= 0:
        return {name: [] for name in names}
    endpoint = deployment.deploy(folder / "build-e2e")
    latencies: dict[str, list[float]] = {}
    try:
        client = deployment.client(endpoint, keyring=Keyring(folder / "keys"))
        for name in names:
            client.predict(name, X[:1])  # keys published and cached by the service
            latencies[name] = [_timed(client.predict, name, X[i % len(X)])[0] for i in range(requests)]
    finally:
        deployment.delete()
    return latencies


def run_bench(
    deployment: Deployment,
    X: np.ndarray,
    out: str | Path,
    *,
    repeats: int = 20,
    e2e_requests: int = 20,
    bulk_budget_s: float = 30.0,
) -> list[ModelFigures]:
    """Measure every model of `deployment` on rows X; write bench.json and bench.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    build = deployment.build(out / "build")
    service = ScoringService.from_build(build.path)
    names = list(service.adapters)
    measured = {name: _in_process(service, name, X, repeats, bulk_budget_s) for name in names}
    latencies = _end_to_end(deployment, names, X, e2e_requests, out)
    figures = [
        ModelFigures(
            model=name,
            e2e_p50_ms=_percentile(latencies[name], 50),
            e2e_p95_ms=_percentile(latencies[name], 95),
            **measured[name],
        )
        for name in names
    ]
    report = {"config": deployment.name, "rows_available": len(X), "repeats": repeats, "models": [asdict(f) for f in figures]}
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    write_chart(figures, out / "bench.png")
    return figures


def format_table(figures: list[ModelFigures]) -> str:
    """A plain-text table; (1/N) is a figure's fraction of the first model's."""
    base = figures[0]
    rows = [
        ("server ms, one row", "server_ms", "{:.2f}"),
        ("end-to-end p50 ms, one row", "e2e_p50_ms", "{:.1f}"),
        ("end-to-end p95 ms, one row", "e2e_p95_ms", "{:.1f}"),
        ("request bytes, one row", "request_bytes", "{:,}"),
        ("response bytes, one row", "response_bytes", "{:,}"),
        ("public key bytes", "key_bytes", "{:,}"),
        ("bulk server rows / s", "bulk_rows_per_s", "{:,.1f}"),
        ("bulk request bytes / row", "bulk_request_bytes_per_row", "{:,.0f}"),
        ("bulk response bytes / row", "bulk_response_bytes_per_row", "{:,.0f}"),
        ("bulk rows per request", "bulk_batch_rows", "{:,}"),
        ("bulk client encrypt ms / row", "bulk_encrypt_ms_per_row", "{:.3f}"),
        ("bulk client decrypt ms / row", "bulk_decrypt_ms_per_row", "{:.3f}"),
        ("client keygen s", "keygen_s", "{:.3f}"),
        ("client encrypt ms, one row", "encrypt_ms_per_row", "{:.2f}"),
        ("client decrypt ms, one row", "decrypt_ms_per_row", "{:.2f}"),
        ("rows checked", "rows_checked", "{:,}"),
        ("agreement with plaintext", "agreement", "{:.2%}"),
        ("max abs score error", "max_abs_error", "{:.1e}"),
    ]
    header = ["figure"] + [f"{f.model} ({f.adapter})" for f in figures]
    lines = [header]
    for label, field, fmt in rows:
        cells = [label]
        for f in figures:
            value = getattr(f, field)
            cell = fmt.format(value)
            ratio_fields = ("server_ms", "e2e_p50_ms", "request_bytes", "response_bytes", "key_bytes")
            if f is not base and field in ratio_fields and value:
                ratio = getattr(base, field) / value
                cell += f" (1/{ratio:,.0f})" if ratio >= 1 else f" ({1 / ratio:,.0f}x)"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def write_chart(figures: list[ModelFigures], path: Path) -> None:
    """Bar charts (log scale) of time, bytes and throughput per model."""
    try:
        import matplotlib
    except ImportError:
        raise BuildError(
            "the benchmark chart needs matplotlib, of the `bench` extra of sei-framework: " + install_hint("bench")
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("server ms, one row", [f.server_ms for f in figures]),
        ("end-to-end p50 ms", [f.e2e_p50_ms for f in figures]),
        ("request + response KB, one row", [(f.request_bytes + f.response_bytes) / 1024 for f in figures]),
        ("public key KB", [f.key_bytes / 1024 for f in figures]),
        ("bulk rows / s", [f.bulk_rows_per_s for f in figures]),
    ]
    labels = [f"{f.model}\n{f.adapter}" for f in figures]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.bar(labels, values, color=[f"C{i}" for i in range(len(figures))])
        ax.set_yscale("log")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle("SEI adapters side by side (log scale; lower is better except throughput)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
