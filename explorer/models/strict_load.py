"""Load a state dict strictly, with a message a user can act on when it does not fit.

``torch.nn.Module.load_state_dict`` reports mismatches as a long RuntimeError; importers of
other people's files want one sentence naming the first few missing, unexpected or misshapen
tensors instead.
"""
from __future__ import annotations

from typing import Optional

import torch


def describe_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> Optional[str]:
    """None when ``given`` has exactly the names and shapes of ``expected``, else a short summary."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {list(given[k].shape)} (needs {list(v.shape)})" for k, v in expected.items()
             if k in given and given[k].shape != v.shape]
    parts = [f"{what}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''}"
             for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    return "; ".join(parts) or None


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, *, assign: bool = False) -> None:
    """``module.load_state_dict(state, strict=True)``, or ValueError "<what> (<mismatch>)"."""
    problem = describe_mismatch(module.state_dict(), state)
    if problem:
        raise ValueError(f"{what} ({problem}).")
    not_float = [k for k, v in state.items() if not v.is_floating_point()]
    if not_float:
        raise ValueError(f"{what} (tensor {not_float[0]} is not floating point).")
    module.load_state_dict(state, strict=True, assign=assign)
