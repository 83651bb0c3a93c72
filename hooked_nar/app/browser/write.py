"""Write the browser folder: ``index.html``, ``assets/`` (the page's JS and CSS, copied from
this package) and ``data/`` (the gathered data as JavaScript files, since a page opened from
``file://`` may load scripts but not fetch JSON).

    index.html
    assets/browser.js, assets/browser.css
    data/index.js              window.NAR_INDEX = {meta, concepts, features}
    data/graphs.js             window.NAR_GRAPHS = {graph: drawing}
    data/features/f0037.js     NAR_FEATURE({...})   (loaded when the feature is opened)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hooked_nar.model.checkpoint import write_directory_atomically

ASSETS = Path(__file__).parent / "assets"
ASSET_FILES = ("browser.js", "browser.css")


def _js(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def feature_file(f: int) -> str:
    """The data file of feature ``f``, relative to the browser folder."""
    return f"data/features/f{f:04d}.js"


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_browser(data: dict, out: str | os.PathLike) -> Path:
    """Write :func:`hooked_nar.app.browser.gather.gather`'s ``data`` as a browser folder at
    ``out`` (replaced atomically: an interrupted write leaves the old folder)."""

    def write(tmp: Path) -> None:
        (tmp / "assets").mkdir()
        (tmp / "data" / "features").mkdir(parents=True)
        shutil.copyfile(ASSETS / "index.html", tmp / "index.html")
        for name in ASSET_FILES:
            shutil.copyfile(ASSETS / name, tmp / "assets" / name)
        index = {k: data[k] for k in ("meta", "concepts", "features")}
        (tmp / "data" / "index.js").write_text(f"window.NAR_INDEX = {_js(index)};\n")
        graphs = {str(g): v for g, v in data["graphs"].items()}
        (tmp / "data" / "graphs.js").write_text(f"window.NAR_GRAPHS = {_js(graphs)};\n")
        for f, detail in data["details"].items():
            detail = {**detail, "acts": {str(g): v for g, v in detail["acts"].items()}}
            (tmp / feature_file(f)).write_text(f"NAR_FEATURE({_js(detail)});\n")

    return write_directory_atomically(out, write)
