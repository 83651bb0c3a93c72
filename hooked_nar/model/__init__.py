"""The hooked encoder-processor-decoder model."""

from hooked_nar.model.cache import NARCache, RowIndex, StackedActivation
from hooked_nar.model.config import NARConfig
from hooked_nar.model.hooked_nar import HookedNAR, NARLogits

__all__ = ["HookedNAR", "NARCache", "NARConfig", "NARLogits", "RowIndex", "StackedActivation"]
