"""What cfgen needs from its dependencies that their public APIs do not offer, in one place.

Everything else goes through public APIs. Each entry says what it relies on; `tests/test_compat.py`
checks every one on the installed versions, by behaviour, and fails naming the entry when a new
release breaks it. `pyproject.toml` caps these dependencies at the versions that test passed on.

- captum: LIME's exponential kernel over the cosine distance with a width other than its default
  is only reachable at a private path (`captum.attr._core.lime`).
- captum: `KernelShap` builds its scikit-learn surrogate in `__init__` and takes no argument to
  choose another; the surrogate it fits is the `interpretable_model` attribute it inherits from
  `LimeBase`.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from captum.attr import LimeBase

Method = TypeVar("Method", bound=LimeBase)


def exp_kernel_similarity(kernel_width: float) -> Callable[..., float]:
    """LIME's sample weight exp(-d^2 / (2 width^2)), d = cosine distance to the query."""
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    return get_exp_kernel_similarity_function("cosine", kernel_width)


def set_interpretable_model(method: Method, model: Any) -> Method:
    """`method` (a captum `LimeBase`, e.g. `KernelShap`) fitting `model` as its surrogate.

    `model` follows captum's interpretable-model contract: `fit(DataLoader of (x, y, weight))`,
    `representation()`.
    """
    if not hasattr(method, "interpretable_model"):
        raise RuntimeError(
            f"captum's {type(method).__name__} has no `interpretable_model` attribute any more; "
            "cfgen.compat.set_interpretable_model needs updating for this captum version"
        )
    method.interpretable_model = model
    return method
