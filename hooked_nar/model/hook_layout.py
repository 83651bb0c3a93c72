"""Parameter-free modules that hold the hook points of one processor step.

The processor's weights are shared across steps, but every step owns its own
``HookPoint``s, so each activation has a unique name (``steps.3.hook_node_out``) and
``hook.layer()`` returns the step. Which hook points a layer has is the processor's own
declaration (``layer_hooks`` in ``hooked_nar/model/processors/<name>.py``); this module adds
what every processor shares (``hook_node_in``, ``hook_node_out``, the hint decoders).
"""

from __future__ import annotations

from torch import nn
from transformer_lens.hook_points import HookPoint

from hooked_nar.model.config import NARConfig
from hooked_nar.model.fields import Field
from hooked_nar.model.processors import processor_class


class LayerHooks(nn.Module):
    """Hook points of one processor layer, as the processor declares them (``layer_hooks``)."""

    def __init__(self, cfg: NARConfig, with_output: bool = False) -> None:
        super().__init__()
        for name, module in processor_class(cfg.processor).layer_hooks(cfg).items():
            setattr(self, name, module)
        if with_output:
            self.hook_node_out = HookPoint()  # [N, d] hidden state after this layer


class HintDecoderHooks(nn.Module):
    """``hook_<hint>``: the logits of every decoded hint at this step."""

    def __init__(self, hint_fields: list[Field]) -> None:
        super().__init__()
        for f in hint_fields:
            setattr(self, f"hook_{f.name}", HookPoint())


class StepHooks(nn.Module):
    """All hook points of processor step t: ``steps.{t}.*``.

    With one layer per step the layer's hook points sit directly on the step
    (``steps.{t}.hook_msg``); with several they are ``steps.{t}.layers.{l}.hook_msg``, and
    each layer's output is ``steps.{t}.layers.{l}.hook_node_out``.
    """

    def __init__(self, cfg: NARConfig, hint_fields: list[Field]) -> None:
        super().__init__()
        self.hook_node_in = HookPoint()  # [N, d] hidden state read by the step
        if cfg.global_readout:
            self.hook_graph_in = HookPoint()  # [B, d] graph features read by the step
        if cfg.num_layers == 1:
            self.layers = None
            for name, module in LayerHooks(cfg).named_children():
                setattr(self, name, module)
        else:
            self.layers = nn.ModuleList(
                LayerHooks(cfg, with_output=True) for _ in range(cfg.num_layers)
            )
        self.hook_node_out = HookPoint()  # [N, d] hidden state after the step
        self.decoder = HintDecoderHooks(hint_fields)

    def layer(self, index: int) -> nn.Module:
        """The hooks of layer ``index`` of this step (the step itself when it has one layer)."""
        return self if self.layers is None else self.layers[index]
