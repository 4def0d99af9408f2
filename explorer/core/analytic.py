"""Denoisers known in closed form: ground truth for every solver (SPEC §5).

* :class:`GaussianDenoiser` — data N(μ, c² I); the PF-ODE has an exact solution.
* :class:`GMMDenoiser` — a mixture Σ w_k N(μ_k, s_k² I); exact D, reference by RK45.
* :class:`IdealDenoiser` — the optimal denoiser of a finite data set (EDM eq. 57).
* :func:`toy` — named 2-D mixtures: ring, moons, swiss-roll, checkerboard.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from explorer.core.denoiser import Denoiser, check_shape, sigma_column


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances ``[A, B]`` computed from differences (no ‖a‖²+‖b‖²−2ab cancellation)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()


def _as_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"A sample shape needs positive sizes (got {list(shape)}).")
    return shape


class GaussianDenoiser(Denoiser):
    """D(x; σ) = μ + c²/(c²+σ²)(x − μ) for data N(μ, c² I)."""

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, shape: Sequence[int] = (2,), mean: float | torch.Tensor = 0.0, std: float = 0.5, name: str = "gaussian") -> None:
        super().__init__()
        self.shape = _as_shape(shape)
        if not (std > 0 and math.isfinite(std)):
            raise ValueError(f"The Gaussian's standard deviation must be positive (got {std}).")
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).expand(self.shape).clone())
        self.std = float(std)
        self.name = name
        self.data_range = (float(self.mean.min()) - 3 * std, float(self.mean.max()) + 3 * std)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_shape(x, self.shape, self.name)
        sig = sigma_column(sigma, x)
        c2 = self.std**2
        mu = self.mean.to(x.dtype)
        return mu + c2 / (c2 + sig**2) * (x - mu)

    def exact(self, y0: torch.Tensor, sigma0: float, sigma: float) -> torch.Tensor:
        """The PF-ODE solution in unscaled space: y(σ) = μ + (y(σ₀) − μ) sqrt(σ²+c²)/sqrt(σ₀²+c²)."""
        c2 = self.std**2
        mu = self.mean.to(y0.dtype)
        return mu + (y0 - mu) * math.sqrt(sigma**2 + c2) / math.sqrt(sigma0**2 + c2)


class GMMDenoiser(Denoiser):
    """The exact denoiser of an isotropic Gaussian mixture, with log-sum-exp responsibilities."""

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, means: torch.Tensor, stds: Sequence[float], weights: Sequence[float], shape: Sequence[int], name: str = "gmm") -> None:
        super().__init__()
        self.shape = _as_shape(shape)
        dim = math.prod(self.shape)
        means = torch.as_tensor(means, dtype=torch.float64)
        k = means.shape[0] if means.ndim >= 1 else 0
        if means.ndim != 2 or means.shape[1] != dim or k < 1:
            raise ValueError(f"A mixture needs K ≥ 1 means of {dim} numbers each (shape {list(self.shape)}); got {list(means.shape)}.")
        stds_t = torch.as_tensor(stds, dtype=torch.float64).reshape(-1)
        weights_t = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if stds_t.numel() != k or weights_t.numel() != k:
            raise ValueError(f"A mixture of {k} components needs {k} stds and {k} weights (got {stds_t.numel()} and {weights_t.numel()}).")
        if not bool((stds_t > 0).all() and torch.isfinite(stds_t).all()):
            raise ValueError("Every component's std must be positive and finite.")
        if not bool((weights_t > 0).all() and torch.isfinite(weights_t).all()):
            raise ValueError("Every mixture weight must be positive and finite.")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("Every mixture mean must be finite.")
        self.register_buffer("means", means)
        self.register_buffer("variances", stds_t**2)
        self.register_buffer("log_weights", (weights_t / weights_t.sum()).log())
        self.name = name
        spread = float(stds_t.max())
        self.data_range = (float(means.min()) - 3 * spread, float(means.max()) + 3 * spread)

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_shape(x, self.shape, self.name)
        y = x.reshape(x.shape[0], -1)
        sig2 = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1) ** 2  # [B or 1, 1]
        mu, var, logw = (t.to(x.dtype) for t in (self.means, self.variances, self.log_weights))
        total = var.unsqueeze(0) + sig2  # [B, K]
        dist2 = _sq_dist(y, mu)
        log_r = logw - 0.5 * y.shape[1] * total.log() - dist2 / (2 * total)
        r = torch.softmax(log_r, dim=1)  # [B, K]
        shrink = var.unsqueeze(0) / total  # [B, K]
        # Σ_k r_k (μ_k + shrink_k (y − μ_k)) = Σ_k r_k (1 − shrink_k) μ_k + (Σ_k r_k shrink_k) y
        out = (r * (1 - shrink)) @ mu + (r * shrink).sum(1, keepdim=True) * y
        return out.reshape(x.shape)

    def to_spec(self) -> dict:
        """The JSON form read by :func:`load_gmm_json`."""
        return {
            "kind": "gmm", "shape": list(self.shape), "means": self.means.tolist(),
            "stds": self.variances.sqrt().tolist(), "weights": self.log_weights.exp().tolist(),
        }


MAX_COMPONENTS = 100_000
MAX_MIXTURE_NUMBERS = 10_000_000  # K × dim of the means


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value: object, field: str, length: Optional[int] = None) -> list:
    if not isinstance(value, list) or not all(_is_number(v) for v in value) or (length is not None and len(value) != length):
        count = f"{length} " if length is not None else ""
        raise ValueError(f"The mixture's {field!r} must be a list of {count}numbers.")
    return value


def _check_spec(spec: object) -> tuple[tuple[int, ...], int]:
    """Types and sizes of a mixture spec before any tensor is made: (shape, K)."""
    if not isinstance(spec, dict) or spec.get("kind") != "gmm":
        raise ValueError('A mixture file must be a JSON object with "kind": "gmm".')
    missing = [k for k in ("shape", "means", "stds", "weights") if k not in spec]
    if missing:
        raise ValueError(f"The mixture file lacks {', '.join(missing)}.")
    shape = spec["shape"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_MIXTURE_NUMBERS for s in shape):
        raise ValueError(f"The mixture's 'shape' must be a list of 1 to 4 positive integers, not {str(shape)[:40]}.")
    dim, means = math.prod(shape), spec["means"]
    if not isinstance(means, list) or not 1 <= len(means) <= MAX_COMPONENTS:
        raise ValueError(f"The mixture's 'means' must be a list of 1 to {MAX_COMPONENTS:,} components.")
    if len(means) * dim > MAX_MIXTURE_NUMBERS:
        raise ValueError(f"The mixture has {len(means) * dim:,} numbers in its means, more than the limit of "
                         f"{MAX_MIXTURE_NUMBERS:,}.")
    for k, mean in enumerate(means):
        _numbers(mean, f"means[{k}]", dim)
    _numbers(spec["stds"], "stds", len(means))
    _numbers(spec["weights"], "weights", len(means))
    return tuple(shape), len(means)


def gmm_from_spec(spec: dict, name: str = "gmm") -> GMMDenoiser:
    """Build a mixture from ``{"kind": "gmm", "shape", "means", "stds", "weights"}`` (checked first)."""
    shape, _ = _check_spec(spec)
    means = torch.tensor(spec["means"], dtype=torch.float64)
    return GMMDenoiser(means, spec["stds"], spec["weights"], shape, name=name)


def load_gmm_json(path: str | Path) -> GMMDenoiser:
    """A mixture from a JSON file; size, nesting, types and shapes are checked before anything is built."""
    from explorer.core.files import read_json_file

    path = Path(path)
    spec = read_json_file(path, "mixture file")
    try:
        return gmm_from_spec(spec, name=path.stem)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None


class IdealDenoiser(Denoiser):
    """D(x; σ) = Σ_j softmax_j(−‖x − y_j‖²/(2σ²)) y_j over a finite data set (EDM eq. 57)."""

    sigma_min = 0.0
    sigma_max = math.inf

    def __init__(self, data: torch.Tensor, name: str = "ideal", chunk: int = 4096) -> None:
        super().__init__()
        data = torch.as_tensor(data)
        if data.ndim < 2 or data.shape[0] < 1:
            raise ValueError("The ideal denoiser needs an array of at least one sample, shaped [M, *shape].")
        if not torch.isfinite(data).all():
            raise ValueError("The data set for the ideal denoiser contains NaN or infinity.")
        self.shape = tuple(data.shape[1:])
        self.register_buffer("data", data.to(torch.float64).reshape(data.shape[0], -1))
        self.name = name
        self.chunk = chunk
        self.data_range = (float(data.min()), float(data.max()))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_shape(x, self.shape, self.name)
        y = x.reshape(x.shape[0], -1)
        data = self.data.to(x.dtype)
        sig2 = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1) ** 2
        logits = -_sq_dist(y, data) / (2 * sig2)
        return (torch.softmax(logits, dim=1) @ data).reshape(x.shape)


# ------------------------------------------------------------------------ 2-D toys
def _ring(n: int = 8, radius: float = 2.0, std: float = 0.15) -> tuple[torch.Tensor, list[float]]:
    angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([radius * angles.cos(), radius * angles.sin()], 1), [std] * n


def _moons(per_moon: int = 16, std: float = 0.12) -> tuple[torch.Tensor, list[float]]:
    a = torch.linspace(0, math.pi, per_moon, dtype=torch.float64)
    upper = torch.stack([a.cos(), a.sin()], 1)
    lower = torch.stack([1 - a.cos(), 0.5 - a.sin()], 1)
    pts = torch.cat([upper, lower]) - torch.tensor([0.5, 0.25], dtype=torch.float64)
    return pts * 1.6, [std] * (2 * per_moon)


def _swiss_roll(n: int = 40, std: float = 0.12) -> tuple[torch.Tensor, list[float]]:
    a = torch.linspace(1.5 * math.pi, 4.5 * math.pi, n, dtype=torch.float64)
    pts = torch.stack([a * a.cos(), a * a.sin()], 1) / (4.5 * math.pi) * 2.2
    return pts, [std] * n


def _checkerboard(cells: int = 4, per_side: int = 3, size: float = 1.0) -> tuple[torch.Tensor, list[float]]:
    centers = []
    step = size / per_side
    for i in range(cells):
        for j in range(cells):
            if (i + j) % 2:
                continue
            x0, y0 = (i - cells / 2) * size, (j - cells / 2) * size
            for u in range(per_side):
                for v in range(per_side):
                    centers.append([x0 + (u + 0.5) * step, y0 + (v + 0.5) * step])
    return torch.tensor(centers, dtype=torch.float64), [step * 0.45] * len(centers)


TOYS = {"ring": _ring, "moons": _moons, "swiss-roll": _swiss_roll, "checkerboard": _checkerboard}


def toy(name: str) -> GMMDenoiser:
    """A built-in 2-D toy distribution (a Gaussian mixture) by name."""
    if name not in TOYS:
        raise ValueError(f"Unknown toy {name!r}; choose one of {', '.join(TOYS)}.")
    means, stds = TOYS[name]()
    return GMMDenoiser(means, stds, [1.0] * len(stds), (2,), name=name)
