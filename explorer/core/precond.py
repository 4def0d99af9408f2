"""Preconditioners: turn a raw network F into a denoiser D (SPEC §3).

``D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ))`` with the four coefficient sets
of Karras et al. 2022 (EDM, Table 1): EDM, VP, VE and iDDPM. The network is held as the
attribute ``model``, so a preconditioner's state dict has the same names as NVlabs ``edm``'s
(``model.*``, and iDDPM's ``u`` buffer first); official checkpoints load strictly.

F is any ``torch.nn.Module`` called as ``F(c_in * x, c_noise, class_labels)`` (plus
``augment_labels=`` when given). The coefficients are evaluated in the dtype of ``x``: a float64
run is float64 end to end when the caller also converted the network.

The module also holds adapters for networks trained with another target (ε, x₀, v or the
score), which turn them into the same :class:`Denoiser` interface.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch

from explorer.core.denoiser import Denoiser, check_shape, sigma_column
from explorer.core.discretization import iddpm_sigmas

Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _infer_shape(model: Any, shape: Optional[Sequence[int]]) -> tuple[int, ...]:
    """Sample shape from the argument, else from an image network's ``in_channels``/``img_resolution``."""
    if shape is not None:
        return tuple(int(s) for s in shape)
    channels = getattr(model, "in_channels", None)
    resolution = getattr(model, "img_resolution", None)
    if channels is None or resolution is None:
        raise ValueError("Give the sample shape: the network does not say what images it takes.")
    return (int(channels), int(resolution), int(resolution))


def _sigma_vector(sigma: Any, x: torch.Tensor) -> torch.Tensor:
    """σ as a ``[B]`` tensor in the dtype and device of ``x`` (accepts 0-dim, ``[B]`` or ``[B,1,...]``)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.numel() == 1:
        return sigma.reshape(1).expand(x.shape[0])
    sigma = sigma.reshape(-1)
    if sigma.shape[0] != x.shape[0]:
        raise ValueError(f"Got {sigma.shape[0]} noise levels for a batch of {x.shape[0]} samples.")
    return sigma


def class_label_matrix(labels: Optional[torch.Tensor], label_dim: int, x: torch.Tensor) -> Optional[torch.Tensor]:
    """Class labels as ``[B, label_dim]`` float rows for a conditional network, else None.

    Integer class indices ``[B]`` become one-hot rows; missing labels become zeros (the
    "unconditional" input of a class-conditional EDM network). Unconditional networks ignore
    labels, as EDM's preconditioners do.
    """
    if label_dim == 0:
        return None
    if labels is None:
        return torch.zeros(x.shape[0], label_dim, dtype=x.dtype, device=x.device)
    labels = torch.as_tensor(labels, device=x.device)
    if not labels.is_floating_point():
        if labels.ndim != 1 or bool(((labels < 0) | (labels >= label_dim)).any()):
            raise ValueError(f"Class indices must be a 1-D list of integers in 0..{label_dim - 1}.")
        return torch.nn.functional.one_hot(labels.long(), label_dim).to(x.dtype)
    if labels.numel() % label_dim != 0:
        raise ValueError(f"Labels of shape {tuple(labels.shape)} do not fit a model with {label_dim} classes.")
    return labels.to(x.dtype).reshape(-1, label_dim)


class Preconditioner(Denoiser):
    """Common machinery: validates inputs, evaluates the coefficients and calls the network.

    Subclasses define :meth:`coefficients` and :meth:`config` (their constants, as stored in a
    checkpoint's metadata). ``kind`` is the short name used by checkpoints and the CLI.
    """

    kind = ""

    def __init__(self, model: torch.nn.Module, *, shape: Optional[Sequence[int]] = None,
                 label_dim: Optional[int] = None, name: Optional[str] = None) -> None:
        super().__init__()
        self.shape = _infer_shape(model, shape)
        self.label_dim = int(getattr(model, "label_dim", 0) if label_dim is None else label_dim)
        self.name = name or f"{self.kind}-{type(model).__name__}"
        self.model = model

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        """``(c_skip, c_out, c_in, c_noise)`` for σ, each with σ's shape and dtype."""
        raise NotImplementedError

    def config(self) -> dict[str, float]:
        """The constants that, with the network, rebuild this preconditioner."""
        raise NotImplementedError

    def network_output(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: Optional[torch.Tensor],
                       augment_labels: Optional[torch.Tensor]) -> torch.Tensor:
        """F(c_in x; c_noise) as the denoiser uses it (iDDPM drops its learned-variance half)."""
        extra = {} if augment_labels is None else {"augment_labels": augment_labels.to(x_in.dtype)}
        return self.model(x_in, c_noise, labels, **extra)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None,
                augment_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_shape(x, self.shape, self.name)
        sigma = _sigma_vector(sigma, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        labels = class_label_matrix(labels, self.label_dim, x)
        out = self.network_output(sigma_column(c_in, x) * x, c_noise, labels, augment_labels)
        return sigma_column(c_skip, x) * x + sigma_column(c_out, x) * out.to(x.dtype)


class EDMPrecond(Preconditioner):
    """EDM: unit-variance network input and target for every σ (σ_data = 0.5 by default)."""

    kind = "edm"

    def __init__(self, model: torch.nn.Module, *, sigma_data: float = 0.5, sigma_min: float = 0.0,
                 sigma_max: float = math.inf, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        return sd2 / total, sigma * self.sigma_data / total.sqrt(), total.rsqrt(), sigma.log() / 4

    def config(self) -> dict[str, float]:
        return dict(sigma_data=self.sigma_data, sigma_min=self.sigma_min, sigma_max=self.sigma_max)


class VEPrecond(Preconditioner):
    """Variance exploding (Song et al. 2021, NCSN++): F predicts the scaled noise, c_noise = ln(σ/2)."""

    kind = "ve"

    def __init__(self, model: torch.nn.Module, *, sigma_min: float = 0.02, sigma_max: float = 100.0,
                 **kw: Any) -> None:
        super().__init__(model, **kw)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        return torch.ones_like(sigma), sigma, torch.ones_like(sigma), (0.5 * sigma).log()

    def config(self) -> dict[str, float]:
        return dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max)


class VPPrecond(Preconditioner):
    """Variance preserving (Song et al. 2021, DDPM++): F predicts ε from the VP-scaled input.

    c_noise is the continuous time ``(M − 1) t(σ)`` of the VP schedule. ``t(σ)`` is evaluated
    stably (``log1p``, no cancellation): EDM's float32 c_noise is 1.3 % off at σ = 0.002, so
    float32 results differ slightly from EDM's float32 numbers there and agree with its
    float64 ones. The
    trained range ``[σ(ε_t), σ(1)]`` is likewise computed exactly in float64 (EDM's float32
    value of σ(1e-5) is 0.000977 instead of 0.001000).
    """

    kind = "vp"

    def __init__(self, model: torch.nn.Module, *, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000,
                 epsilon_t: float = 1e-5, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.beta_d = float(beta_d)
        self.beta_min = float(beta_min)
        self.M = int(M)
        self.epsilon_t = float(epsilon_t)
        self.sigma_min = self.sigma_of_t(self.epsilon_t)
        self.sigma_max = self.sigma_of_t(1.0)

    def sigma_of_t(self, t: float) -> float:
        """σ_vp(t) = sqrt(exp(½ β_d t² + β_min t) − 1), in float64."""
        return math.sqrt(math.expm1(0.5 * self.beta_d * t * t + self.beta_min * t))

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma_of_t`, elementwise in σ's dtype.

        ``(sqrt(β_min² + 2 β_d L) − β_min)/β_d`` with ``L = ln(1 + σ²)``; for β_min > 0 it is
        evaluated as ``2L/(sqrt(β_min² + 2 β_d L) + β_min)``, the same value without the
        cancellation that costs float32 two digits at small σ.
        """
        log_term = torch.log1p(sigma**2)
        root = (self.beta_min**2 + 2 * self.beta_d * log_term).sqrt()
        if self.beta_min > 0:
            return 2 * log_term / (root + self.beta_min)
        return (root - self.beta_min) / self.beta_d

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        c_noise = (self.M - 1) * self.t_of_sigma(sigma)
        return torch.ones_like(sigma), -sigma, (sigma**2 + 1).rsqrt(), c_noise

    def config(self) -> dict[str, float]:
        return dict(beta_d=self.beta_d, beta_min=self.beta_min, M=self.M, epsilon_t=self.epsilon_t,
                    sigma_min=self.sigma_min, sigma_max=self.sigma_max)


def iddpm_noise_levels(M: int = 1000, C_1: float = 0.001, C_2: float = 0.008) -> torch.Tensor:
    """The ``M + 1`` noise levels ``u_j`` of the improved-DDPM cosine schedule, float32 on CPU.

    Official checkpoints hold a float32 buffer ``u``, so this one is float32 too; it is the
    float64 table of :func:`explorer.core.discretization.iddpm_sigmas` rounded once, which
    gives the same bits on every CPU (EDM's own float32 evaluation does not: it differs
    from machine to machine and from the float64 table by up to 5e-4 relative).
    """
    return iddpm_sigmas(int(M), float(C_1), float(C_2)).to(torch.float32)


class IDDPMPrecond(Preconditioner):
    """Improved DDPM (Nichol & Dhariwal 2021): discrete σ ∈ {u_j}, c_noise = the step index.

    σ is rounded to the nearest ``u_j`` only for c_noise; ``round_sigma`` lets a sampler
    step exactly on the grid. The network may output twice the image channels (learned
    variance); only the first half is used.
    """

    kind = "iddpm"

    def __init__(self, model: torch.nn.Module, *, C_1: float = 0.001, C_2: float = 0.008, M: int = 1000,
                 **kw: Any) -> None:
        super().__init__(model, **kw)
        self.C_1 = float(C_1)
        self.C_2 = float(C_2)
        self.M = int(M)
        # Computed on the CPU explicitly: it must hold values even when built under a "meta" device scope.
        self.register_buffer("u", iddpm_noise_levels(self.M, self.C_1, self.C_2))

    @property
    def sigma_min(self) -> float:  # type: ignore[override]
        return float(self.u[self.M - 1])

    @property
    def sigma_max(self) -> float:  # type: ignore[override]
        return float(self.u[0])

    def sigma_index(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index j of the nearest ``u_j`` for every element of σ (same shape, int64)."""
        sigma = torch.as_tensor(sigma)
        work = torch.float64 if sigma.dtype == torch.float64 else torch.float32
        u = self.u.to(device=sigma.device, dtype=work)
        dist = (sigma.to(work).reshape(-1, 1) - u.reshape(1, -1)).abs()
        return dist.argmin(dim=1).reshape(sigma.shape)

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        dtype = sigma.dtype if sigma.is_floating_point() else torch.get_default_dtype()
        return self.u.to(sigma.device)[self.sigma_index(sigma)].to(dtype)

    def coefficients(self, sigma: torch.Tensor) -> Coefficients:
        c_noise = (self.M - 1 - self.sigma_index(sigma)).to(sigma.dtype)
        return torch.ones_like(sigma), -sigma, (sigma**2 + 1).rsqrt(), c_noise

    def network_output(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: Optional[torch.Tensor],
                       augment_labels: Optional[torch.Tensor]) -> torch.Tensor:
        return super().network_output(x_in, c_noise, labels, augment_labels)[:, : x_in.shape[1]]

    def config(self) -> dict[str, float]:
        return dict(C_1=self.C_1, C_2=self.C_2, M=self.M, sigma_min=self.sigma_min, sigma_max=self.sigma_max)


PRECONDITIONERS: dict[str, type[Preconditioner]] = {
    cls.kind: cls for cls in (EDMPrecond, VPPrecond, VEPrecond, IDDPMPrecond)
}


def make_precond(kind: str, model: torch.nn.Module, **kw: Any) -> Preconditioner:
    """Wrap ``model`` in the preconditioner named ``kind`` (edm, vp, ve or iddpm)."""
    try:
        cls = PRECONDITIONERS[kind]
    except KeyError:
        raise ValueError(f"Unknown preconditioning {kind!r}; choose one of {', '.join(PRECONDITIONERS)}.") from None
    return cls(model, **kw)


# ---------------------------------------------------------------------------------------------
# Adapters for networks with other targets (SPEC §3 "Parameterizations").

SCALINGS = ("none", "vp", "rf")


class PredictionDenoiser(Denoiser):
    """A denoiser built from a callable ``f(x_in, sigma[, labels])`` with another target.

    Conventions (σ is always the EDM noise level of the unscaled ``x = y + σ n``):

    - ``scaling="none"``: ``x_in = x``.
    - ``scaling="vp"``: ``x_in = s x`` with ``s = 1/sqrt(1 + σ²)``, i.e. the VP-space sample
      ``α y + σ̄ n`` with ``α = s``, ``σ̄ = s σ`` and ``α² + σ̄² = 1`` (DDPM's ``x_t``).
    - ``sigma`` reaches ``f`` as a ``[B]`` tensor; convert it to your own time inside ``f``
      (e.g. ``t = σ⁻¹(σ)`` or a discrete step).
    - ``labels`` are passed as a third argument only when given.

    A callable that is a ``torch.nn.Module`` becomes the submodule ``model`` (moves with ``.to``).
    """

    prediction = ""
    default_scaling = "none"

    def __init__(self, f: Callable[..., torch.Tensor], *, shape: Sequence[int], scaling: Optional[str] = None,
                 sigma_min: float = 0.0, sigma_max: float = math.inf, label_dim: int = 0,
                 name: Optional[str] = None) -> None:
        super().__init__()
        scaling = self.default_scaling if scaling is None else scaling
        if scaling not in SCALINGS:
            raise ValueError(f"Unknown input scaling {scaling!r}; choose one of {', '.join(SCALINGS)}.")
        self.scaling = scaling
        self.shape = tuple(int(s) for s in shape)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.label_dim = int(label_dim)
        self.name = name or f"{self.prediction}-prediction"
        if isinstance(f, torch.nn.Module):
            self.model = f
        else:
            self._f = f

    def _call(self, x_in: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        f = self.model if "model" in self._modules else self._f
        out = f(x_in, sigma) if labels is None else f(x_in, sigma, labels)
        return out.to(x_in.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_shape(x, self.shape, self.name)
        sigma = _sigma_vector(sigma, x)
        sig = sigma_column(sigma, x)
        scale = input_scale(self.scaling, sig)
        out = self._call(scale * x, sigma, labels)
        return self.to_denoised(x, sig, scale, out)

    def to_denoised(self, x: torch.Tensor, sigma: torch.Tensor, scale: torch.Tensor,
                    out: torch.Tensor) -> torch.Tensor:
        """D from the network's output ``out`` (σ and s broadcast against ``x``)."""
        raise NotImplementedError


def input_scale(scaling: str, sigma: torch.Tensor) -> torch.Tensor:
    """s(σ) of the network's input space: 1/sqrt(1 + σ²) (vp), 1/(1 + σ) (rf: 1 − t), or 1."""
    if scaling == "vp":
        return (sigma**2 + 1).rsqrt()
    if scaling == "rf":
        return 1 / (1 + sigma)
    return torch.ones_like(sigma)


class EpsilonDenoiser(PredictionDenoiser):
    """ε-prediction: ``f`` returns the unit noise ``n``; ``D = x − σ ε`` (same ε in both spaces).

    Default scaling ``vp`` (DDPM-style networks see ``x_t = s x``).
    """

    prediction = "epsilon"
    default_scaling = "vp"

    def to_denoised(self, x, sigma, scale, out):
        return x - sigma * out


class X0Denoiser(PredictionDenoiser):
    """x₀-prediction: ``f`` returns the clean-data estimate itself; ``D = x₀``."""

    prediction = "x0"

    def to_denoised(self, x, sigma, scale, out):
        return out


class VDenoiser(PredictionDenoiser):
    """v-prediction (Salimans & Ho 2022), defined in VP space: ``v = α n − σ̄ y``.

    With ``x_vp = s x``: ``D = α x_vp − σ̄ v = s² x − s σ v``. Only ``scaling="vp"`` makes sense.
    """

    prediction = "v"
    default_scaling = "vp"

    def __init__(self, f: Callable[..., torch.Tensor], **kw: Any) -> None:
        if kw.get("scaling", "vp") != "vp":
            raise ValueError("v-prediction is defined in VP space: use scaling='vp'.")
        super().__init__(f, **kw)

    def to_denoised(self, x, sigma, scale, out):
        return scale * (scale * x) - scale * sigma * out


class ScoreDenoiser(PredictionDenoiser):
    """Score-prediction: ``f`` returns ``∇ log p`` of its own input ``x_in``.

    Unscaled (default): ``D = x + σ² score``. VP space: the score of ``x_vp = s x`` is
    ``1/s`` times the unscaled one, so ``D = x + σ² s score``.
    """

    prediction = "score"

    def to_denoised(self, x, sigma, scale, out):
        return x + sigma**2 * scale * out


class FlowVelocityDenoiser(PredictionDenoiser):
    """Flow-matching velocity: ``f`` sees ``x_t = (1 − t) x₀ + t ε`` (t = σ/(1 + σ)) and returns
    ``v = ε − x₀``; then ``D = x_t − t v``. Only ``scaling="rf"`` makes sense (SD3, FLUX, rectified flow).
    """

    prediction = "flow-velocity"
    default_scaling = "rf"

    def __init__(self, f: Callable[..., torch.Tensor], **kw: Any) -> None:
        if kw.get("scaling", "rf") != "rf":
            raise ValueError("A flow velocity is defined on x_t = (1 − t) x₀ + t ε: use scaling='rf'.")
        super().__init__(f, **kw)

    def to_denoised(self, x, sigma, scale, out):
        return scale * x - (sigma / (1 + sigma)) * out
