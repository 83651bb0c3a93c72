"""The registry entry of ``processor="discrete"``: it builds, checks and declares the hooks of
the layout class that runs the config's algorithm."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from hooked_nar.model.processors.discrete.dfs_rounds import DFSRoundsProcessor
from hooked_nar.model.processors.discrete.one_round import OneRoundProcessor

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig

#: Algorithms whose hints need another layout than one round per step.
LAYOUT_CLASSES: dict[str, type[nn.Module]] = {"dfs": DFSRoundsProcessor}


def layout_class(algorithm: str) -> type[nn.Module]:
    """The discrete processor class that runs ``algorithm``."""
    return LAYOUT_CLASSES.get(algorithm, OneRoundProcessor)


class DiscreteProcessor:
    """The registry entry of ``processor="discrete"``: ``DiscreteProcessor(cfg)`` builds the
    layout class of ``cfg.algorithm``, whose hooks and config checks it forwards."""

    owns_trajectory = True

    def __new__(cls, cfg: NARConfig) -> nn.Module:
        return layout_class(cfg.algorithm)(cfg)

    @classmethod
    def check_config(cls, cfg: NARConfig) -> None:
        """The layout class's checks (ValueError for an algorithm no layout fits)."""
        layout_class(cfg.algorithm).check_config(cfg)

    @classmethod
    def layer_hooks(cls, cfg: NARConfig) -> dict[str, nn.Module]:
        """The layout class's hook points of one step."""
        return layout_class(cfg.algorithm).layer_hooks(cfg)

