"""hooked-nar: mechanistic interpretability of neural algorithmic reasoners.

    from hooked_nar import HookedNAR, CLRSDataset      # as `from transformer_lens import HookedTransformer`

The names below are imported on first use (:mod:`hooked_nar.lazy`), so that importing the
package, and ``hooked-nar COMMAND --help``, stay fast.
"""

from typing import TYPE_CHECKING

from hooked_nar.lazy import lazy_exports

if TYPE_CHECKING:
    from hooked_nar.data import CLRSDataset, CLRSLoader, collate
    from hooked_nar.model import HookedNAR, NARCache, NARConfig

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
