"""The NAR analogue of a logit-lens row: a feature's decoder direction read through each
hint (and output) head that is linear in the hidden state.

A node head computes ``logits = W [h; x_emb] + b`` from ``h`` = ``hook_node_out``, so adding
``a * d_f`` to ``h`` (feature ``f`` firing at ``a`` with decoder row ``d_f``) moves the logits
by exactly ``a * W[:, :d_model] @ d_f``. Pointer, edge and graph heads are not linear in one
node's ``h`` (a bilinear score, an MLP, a max-pool), so they are listed as not read; so are
fields without a head (the discrete processor computes its states itself, no heads decode them).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_nar.model.decoders import NodeHead


def _r(x: float) -> float:
    return round(float(x), 4)


def _class_names(algorithm: str, field) -> list[str]:
    from hooked_nar.concept_labels import CLASS_NAMES

    if field.type != "categorical":
        return [field.name]
    names = CLASS_NAMES.get((algorithm, field.name), CLASS_NAMES.get(("*", field.name)))
    names = names or [str(k) for k in range(field.num_classes)]
    return [f"{field.name}={c}" for c in names]


@torch.no_grad()
def decoder_reads(model, sae, acts: Float[Tensor, "R F"]) -> dict:
    """Logit change per unit activation and at the feature's largest activation in ``acts``,
    for every linear node head. Returns ``{"heads": [{"field", "stage", "type", "rows",
    "p95"}], "features": [[{"row", "per_unit", "at_max"}] per feature], "note"}``: ``p95``
    is the 95th percentile of ``|at_max|`` over live features, the reference a row must beat.
    """
    d = model.cfg.d_model
    W_dec = sae.W_dec.detach().float()  # [F, d]
    max_act = acts.max(0).values.clamp(min=0)  # [F]
    live = max_act > 0
    heads, per_feature = [], [[] for _ in range(W_dec.shape[0])]
    skipped, headless = [], []
    for field in [*model.hint_fields, *model.output_fields]:
        if field.name not in model.decoder.heads:
            headless.append(field.name)
            continue
        head = model.decoder.heads[field.name]
        if not isinstance(head, NodeHead):
            skipped.append(f"{field.name} ({field.location} {field.type})")
            continue
        unit = W_dec @ head.lin.weight[:, :d].float().T  # [F, C]
        at_max = unit * max_act[:, None]
        names = _class_names(model.cfg.algorithm, field)
        ref = at_max[live].abs() if bool(live.any()) else at_max.abs()
        p95 = torch.quantile(ref, 0.95, dim=0)
        heads.append(
            {
                "field": field.name,
                "stage": field.stage,
                "type": field.type,
                "rows": names,
                "p95": [_r(x) for x in p95],
            }
        )
        for f in range(W_dec.shape[0]):
            per_feature[f] += [
                {"row": n, "per_unit": _r(unit[f, k]), "at_max": _r(at_max[f, k])}
                for k, n in enumerate(names)
            ]
    notes = []
    if skipped:
        notes.append("Heads not linear in a node's hidden state, not read: " + ", ".join(skipped))
    if headless:
        notes.append(
            "Fields the processor computes without a decoder head, not read: " + ", ".join(headless)
        )
    note = "; ".join(notes)
    return {"heads": heads, "features": per_feature, "note": note}
