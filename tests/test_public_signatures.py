"""The public API says what it takes: ``model``, ``sae``, ``batch``, ``store`` and ``dataset``
arguments carry their types, and tensor arguments their jaxtyping shapes (``Float[Tensor,
"rows d_in"]``, not a bare ``Tensor``), in every function the packages export."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = (
    "sae",
    "patching",
    "hooked_nar.model",
    "hooked_nar.data",
    "hooked_nar.evaluate",
    "hooked_nar.concept_labels",
    "hooked_nar.stats",
    "hooked_nar.figures",
)
TYPED = {"model", "sae", "batch", "store", "eval_store", "dataset", "logits"}
BARE = {"Tensor", "Tensor | None", "torch.Tensor"}


def _exported_functions(package: str):
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None) or [
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == package
    ]
    for name in names:
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):  # alternative constructors such as ActivationStore.from_model
            for attr, value in vars(obj).items():
                if not attr.startswith("_") and isinstance(value, (classmethod, staticmethod)):
                    yield f"{name}.{attr}", value.__func__


@pytest.mark.parametrize("package", PUBLIC)
def test_exported_functions_type_their_arguments(package):
    bad = []
    for name, fn in _exported_functions(package):
        for arg, p in inspect.signature(fn).parameters.items():
            if arg in TYPED and p.annotation is inspect.Parameter.empty:
                bad.append(f"{name}({arg}) has no type")
            if p.annotation in BARE:
                bad.append(f"{name}({arg}: {p.annotation}) has no shape")
    assert not bad, "\n".join(bad)
