"""An offline HTML browser of an SAE's features on the graphs where they fire, step by step.

>>> from hooked_nar.app.browser import browse_run
>>> browse_run("runs/bfs")          # writes runs/bfs/browser/index.html (open it in a browser)

:func:`build_browser` does the same from a model, an SAE and held-out graphs in memory.
The page is plain JavaScript and SVG (``assets/``); the data travels as ``data/*.js``.
"""

from hooked_nar.app.browser.build import BROWSER_DIR, BrowserInfo, build_browser
from hooked_nar.app.browser.run_folder import browse_run, load_run

__all__ = ["BROWSER_DIR", "BrowserInfo", "browse_run", "build_browser", "load_run"]
