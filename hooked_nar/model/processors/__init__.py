"""Processors, one file each, and the registry that maps ``NARConfig.processor`` to a class.

A new processor is one file here (a :class:`Processor` subclass declaring its hook points in
``layer_hooks``) plus one line in :data:`PROCESSOR_CLASSES`.
"""

from __future__ import annotations

from torch import nn

from hooked_nar.model.processors.base import Processor
from hooked_nar.model.processors.discrete import DiscreteProcessor
from hooked_nar.model.processors.mpnn import MPNN
from hooked_nar.model.processors.transformer import GraphTransformer
from hooked_nar.model.processors.triplet_gmpnn import TripletGMPNN

PROCESSOR_CLASSES: dict[str, type[nn.Module]] = {
    "mpnn": MPNN,
    "triplet_gmpnn": TripletGMPNN,
    "transformer": GraphTransformer,
    "discrete": DiscreteProcessor,
}
PROCESSORS = tuple(PROCESSOR_CLASSES)


def processor_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; ValueError naming the valid ones otherwise."""
    if name not in PROCESSOR_CLASSES:
        raise ValueError(f"processor={name!r} is not one of {PROCESSORS}")
    return PROCESSOR_CLASSES[name]


__all__ = ["PROCESSORS", "PROCESSOR_CLASSES", "DiscreteProcessor", "GraphTransformer", "MPNN", "Processor",
           "TripletGMPNN", "processor_class"]
