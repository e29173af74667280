"""Assemble the browser page into one folder of static files: `python tools/build_page.py OUT` (`make page`).

OUT gets the page (clients/web), the JS client (clients/js/src, as lib/) and the two files sets it imports
from clients/js/node_modules (node-seal's JS and wasm, @noble/hashes' SHA-2/SHA-3), installed by `npm ci`
(`make js-client`); nothing is fetched. The client's bare imports ('node-seal', '@noble/hashes/...') are
rewritten to relative paths, as a module Worker has no import map, and so are the page's imports of the client
by its place in the repository ('../js/src/...', which lets tsc check the page: clients/web/tsconfig*.json). Serve OUT with the local target's `page`
option, or from any static host (docs/browser.md).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "clients" / "web"
JS = ROOT / "clients" / "js"
MODULES = JS / "node_modules"
VENDOR = {
    "node-seal": (MODULES / "node-seal", ["dist/index_throws.js", "dist/seal_throws.js", "dist/seal_throws.wasm", "LICENSE"]),
    "noble-hashes": (MODULES / "@noble" / "hashes", ["sha2.js", "sha3.js", "_md.js", "_u64.js", "utils.js", "LICENSE"]),
}
IMPORTS = {
    "node-seal": "../vendor/node-seal/index_throws.js",
    "@noble/hashes/sha2.js": "../vendor/noble-hashes/sha2.js",
    "@noble/hashes/sha3.js": "../vendor/noble-hashes/sha3.js",
}
LIBRARY = "../js/src/"
"""How the page's scripts import the client in the repository; `lib/` in the built page."""
_FROM = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(['"])([^'"]+)\2""")


def _relative_imports(text: str, name: str, *, page: bool = False) -> str:
    """`text` with each bare import of IMPORTS made relative (and, in the page's own scripts, each import of
    the client from LIBRARY pointed at lib/); ValueError for any other import from outside the folder."""

    def swap(match: re.Match[str]) -> str:
        spec = match.group(3)
        if page and spec.startswith(LIBRARY):
            return f"{match.group(1)}{match.group(2)}./lib/{spec[len(LIBRARY):]}{match.group(2)}"
        if spec.startswith("./") or (spec.startswith("../") and not page):
            return match.group(0)
        if spec not in IMPORTS:
            raise ValueError(f"{name} imports {spec!r}, which the page build does not ship; add it to IMPORTS")
        return f"{match.group(1)}{match.group(2)}{IMPORTS[spec]}{match.group(2)}"

    return _FROM.sub(swap, text)


def build_page(out: Path) -> Path:
    """Write the page into `out` (emptied first); returns `out`. FileNotFoundError names what is missing."""
    for package, (folder, files) in VENDOR.items():
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{package} is not installed in {MODULES} (missing {missing[0]}): run `make js-client`")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for source in sorted(WEB.iterdir()):
        if not source.is_file() or source.name.startswith(".") or source.suffix == ".json":  # tsconfig stays out
            continue
        if source.suffix == ".js":
            (out / source.name).write_text(_relative_imports(source.read_text(), source.name, page=True))
        else:
            shutil.copy2(source, out / source.name)
    (out / "lib").mkdir()
    for source in sorted((JS / "src").glob("*.js")):
        (out / "lib" / source.name).write_text(_relative_imports(source.read_text(), source.name))
    for package, (folder, files) in VENDOR.items():
        target = out / "vendor" / package
        target.mkdir(parents=True)
        for name in files:
            shutil.copy2(folder / name, target / Path(name).name)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/build_page.py OUT", file=sys.stderr)
        return 2
    try:
        out = build_page(Path(argv[0]))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"page written to {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
