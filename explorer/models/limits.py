"""Limits on what a model file may declare, checked before anything is built or allocated.

A checkpoint, EDM pickle or diffusers config describes a network in a few numbers; a forged one
can make a reader allocate terabytes (a giant image), loop for hours (a huge table) or divide by
zero (no channels). Every reader checks the description against these bounds first and names
the file, the field and the bound in its ValueError. The bounds are generous: the released EDM
networks (≤ 300 M parameters, 64×64, 1000 classes) and diffusers UNets up to 1 GB are far inside
them. ``docs/files.md`` lists them for users.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

MAX_PARAMETERS = 1_000_000_000   # 4 GB of float32 weights
MAX_IMAGE_SIDE = 2048            # pixels (latent or image) per side
MAX_CHANNELS = 64
MAX_LABELS = 100_000
MAX_TABLE = 100_000              # timesteps of a schedule table (VP M, diffusers num_train_timesteps)
MAX_IDDPM_M = 10_000             # iDDPM's M: its σ table is built step by step
MAX_EXPONENT = 700.0             # ½β_d + β_min of VP: exp() of more overflows float64

# Architecture settings: integer ranges and list lengths (SongUNet / DhariwalUNet kwargs).
_INTS = {
    "img_resolution": (1, MAX_IMAGE_SIDE), "in_channels": (1, MAX_CHANNELS), "out_channels": (1, 2 * MAX_CHANNELS),
    "label_dim": (0, MAX_LABELS), "augment_dim": (0, 64), "model_channels": (1, 4096), "channel_mult_emb": (1, 16),
    "num_blocks": (0, 32), "channel_mult_noise": (1, 16),
}
_INT_LISTS = {"channel_mult": (1, 8, 1, 16), "attn_resolutions": (0, 16, 1, MAX_IMAGE_SIDE),
              "resample_filter": (1, 8, 1, 1000)}
_FRACTIONS = ("dropout", "label_dropout")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(value: Any, low: int, high: int, where: str) -> int:
    """``value`` as an int in [low, high], or ValueError naming ``where`` and the range."""
    if not is_int(value) or not low <= value <= high:
        raise ValueError(f"{where} must be an integer from {low:,} to {high:,}, not {_show(value)}.")
    return value


def check_float(value: Any, where: str, *, low: float = -math.inf, high: float = math.inf,
                open_low: bool = False, allow_inf: bool = False) -> float:
    """A real number in the range (``"inf"`` accepted where ``allow_inf``), or ValueError."""
    if allow_inf and value in ("inf", math.inf):
        return math.inf
    ok = is_number(value) and math.isfinite(value) and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if open_low else '≥'} {low:g}" + (f" and ≤ {high:g}" if math.isfinite(high) else "")
        raise ValueError(f"{where} must be a finite number {bound}, not {_show(value)}.")
    return float(value)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, (int, float, str, bool, type(None))) else f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def check_int_list(value: Any, where: str, lengths: tuple[int, int], values: tuple[int, int]) -> None:
    if not isinstance(value, (list, tuple)) or not lengths[0] <= len(value) <= lengths[1]:
        raise ValueError(f"{where} must be a list of {lengths[0]} to {lengths[1]} integers, not {_show(value)}.")
    for i, item in enumerate(value):
        check_int(item, values[0], values[1], f"{where}[{i}]")


def check_arch(arch: Any, label: str) -> None:
    """Types and ranges of a network description (``{"class": ..., **kwargs}``) before it is built."""
    if not isinstance(arch, dict):
        raise ValueError(f"{label}: the network description must be a JSON object, not {_show(arch)}.")
    for key, value in arch.items():
        where = f"{label}: network setting {key!r}"
        if key in _INTS:
            check_int(value, *_INTS[key], where)
        elif key in _INT_LISTS:
            low_len, high_len, low, high = _INT_LISTS[key]
            check_int_list(value, where, (low_len, high_len), (low, high))
        elif key in _FRACTIONS:
            check_float(value, where, low=0.0, high=1.0)
        elif key != "class" and not isinstance(value, (str, bool, type(None))):
            raise ValueError(f"{where} must be a string, not {_show(value)}.")
    check_unet_estimate(arch, label)


# Preconditioner constants: (field, check) per kind.
def _positive(value: Any, where: str) -> float:
    return check_float(value, where, low=0.0, open_low=True)


_PRECOND_FIELDS = {
    "edm": {"sigma_data": _positive, "sigma_min": lambda v, w: check_float(v, w, low=0.0),
            "sigma_max": lambda v, w: check_float(v, w, low=0.0, open_low=True, allow_inf=True)},
    "ve": {"sigma_min": lambda v, w: check_float(v, w, low=0.0, open_low=True),
           "sigma_max": lambda v, w: check_float(v, w, low=0.0, open_low=True)},
    "vp": {"beta_d": lambda v, w: check_float(v, w, low=0.0, high=2 * MAX_EXPONENT),
           "beta_min": lambda v, w: check_float(v, w, low=0.0, high=MAX_EXPONENT),
           "M": lambda v, w: check_int(v, 1, MAX_TABLE, w),
           "epsilon_t": lambda v, w: check_float(v, w, low=0.0, high=1.0, open_low=True)},
    "iddpm": {"C_1": lambda v, w: check_float(v, w, low=0.0, high=1.0, open_low=True),
              "C_2": lambda v, w: check_float(v, w, low=0.0, high=1.0),
              "M": lambda v, w: check_int(v, 2, MAX_IDDPM_M, w)},
}
# Keys a preconditioner's config() also records (derived values, not constructor arguments).
_DERIVED = {"vp": ("sigma_min", "sigma_max"), "iddpm": ("sigma_min", "sigma_max")}


def precond_fields(kind: str) -> tuple[str, ...]:
    return tuple(_PRECOND_FIELDS.get(kind, ()))


def check_precond_kwargs(kind: str, kwargs: Any, label: str, *, allow_derived: bool = False) -> None:
    """Constants of a preconditioner: the kind's own names only, each in range."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"{label}: the preconditioner settings must be a JSON object, not {_show(kwargs)}.")
    fields = _PRECOND_FIELDS[kind]
    allowed = set(fields) | (set(_DERIVED.get(kind, ())) if allow_derived else set())
    foreign = sorted(set(kwargs) - allowed)
    if foreign:
        owner = next((k for k, f in _PRECOND_FIELDS.items() if foreign[0] in f), None)
        hint = f", a setting of {owner} preconditioning" if owner else ""
        raise ValueError(f"{label}: the {kind} preconditioner has no setting {foreign[0]!r}{hint}; the file's "
                         "settings do not belong to the preconditioning it names.")
    for key, value in kwargs.items():
        if key in fields:
            fields[key](value, f"{label}: {kind} setting {key!r}")
    if kind == "vp":
        exponent = 0.5 * float(kwargs.get("beta_d", 19.9)) + float(kwargs.get("beta_min", 0.1))
        if exponent > MAX_EXPONENT:
            raise ValueError(f"{label}: vp settings give σ_max = sqrt(exp({exponent:g}) − 1), beyond float64; "
                             f"½β_d + β_min must be ≤ {MAX_EXPONENT:g}.")


def check_unet_estimate(arch: dict, label: str) -> None:
    """A lower bound on a SongUNet/DhariwalUNet's weights from its settings, checked before building.

    Each U-Net block holds two 3×3 convolutions per level, in the encoder and the decoder:
    at least 36 · num_blocks · Σ (model_channels · mult)² weights. Building a forged giant on the
    meta device would still take minutes; this refuses it at once.
    """
    channels, mults, blocks = arch.get("model_channels", 128), arch.get("channel_mult", (1,)), arch.get("num_blocks", 1)
    estimate = 36 * blocks * sum((channels * m) ** 2 for m in mults)
    if estimate > MAX_PARAMETERS:
        raise ValueError(f"{label}: the described network has at least {estimate:,} parameters, more than the limit "
                         f"of {MAX_PARAMETERS:,}.")


def check_parameter_count(parameters: Iterable[Any], label: str) -> int:
    """The number of weights a (meta-device) network would hold, at most :data:`MAX_PARAMETERS`."""
    total = sum(p.numel() for p in parameters)
    if total > MAX_PARAMETERS:
        raise ValueError(f"{label}: the described network has {total:,} parameters, more than the limit of "
                         f"{MAX_PARAMETERS:,}.")
    return total
