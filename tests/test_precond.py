"""Preconditioners (SPEC §3) and the ε / x₀ / v / score adapters."""
from __future__ import annotations

import math

import pytest
import torch

from explorer.core.discretization import iddpm_sigmas
from explorer.core.precond import (
    EDMPrecond, EpsilonDenoiser, IDDPMPrecond, ScoreDenoiser, VDenoiser, VEPrecond, VPPrecond, X0Denoiser,
    iddpm_noise_levels, make_precond,
)

SIGMA = torch.tensor([0.002, 0.05, 0.5, 3.0, 80.0], dtype=torch.float64)


class Recorder(torch.nn.Module):
    """A stand-in network F(x, c_noise, labels) = w·x + c_noise that remembers its inputs."""

    def __init__(self, channels: int = 2, res: int = 4, label_dim: int = 0, out_channels: int | None = None):
        super().__init__()
        self.in_channels, self.img_resolution, self.label_dim = channels, res, label_dim
        self.out_channels = out_channels or channels
        self.w = torch.nn.Parameter(torch.tensor(0.7))
        self.calls = []

    def forward(self, x, c_noise, labels=None, augment_labels=None):
        self.calls.append(dict(x=x, c_noise=c_noise, labels=labels, augment_labels=augment_labels))
        out = self.w * x + c_noise.reshape(-1, 1, 1, 1)
        return out.repeat(1, self.out_channels // x.shape[1], 1, 1)


def _expected(kind: str, s: torch.Tensor):
    """SPEC §3's table, written out independently of the implementation."""
    one = torch.ones_like(s)
    if kind == "edm":
        sd = 0.5
        return sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt(), 1 / (s**2 + sd**2).sqrt(), s.log() / 4
    if kind == "ve":
        return one, s, one, (s / 2).log()
    if kind == "vp":
        beta_d, beta_min = 19.9, 0.1
        t = ((beta_min**2 + 2 * beta_d * (s**2).log1p()).sqrt() - beta_min) / beta_d
        return one, -s, 1 / (s**2 + 1).sqrt(), 999 * t
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["edm", "ve", "vp"])
def test_coefficients_follow_the_spec_table(kind):
    pre = make_precond(kind, Recorder())
    for got, want in zip(pre.coefficients(SIGMA), _expected(kind, SIGMA)):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", ["edm", "ve", "vp", "iddpm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_c_skip_x_plus_c_out_f_of_c_in_x(kind, dtype):
    net = Recorder(out_channels=4 if kind == "iddpm" else 2).to(dtype)
    pre = make_precond(kind, net)
    x = torch.randn(3, 2, 4, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=dtype)
    D = pre(x, sigma)
    assert D.dtype == dtype and D.shape == x.shape
    c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in pre.coefficients(sigma))
    call = net.calls[-1]
    assert call["x"].dtype == dtype and call["c_noise"].dtype == dtype and call["c_noise"].shape == (3,)
    torch.testing.assert_close(call["x"], c_in * x)
    torch.testing.assert_close(D, c_skip * x + c_out * (0.7 * c_in * x + c_noise))


def test_scalar_sigma_equals_a_vector_of_it():
    pre = EDMPrecond(Recorder())
    x = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(pre(x, torch.tensor(0.3)), pre(x, torch.full((3,), 0.3)))
    with pytest.raises(ValueError, match="noise levels"):
        pre(x, torch.ones(2))
    with pytest.raises(ValueError, match="shape"):
        pre(torch.randn(3, 2, 5, 5), torch.ones(3))


def test_conditional_model_gets_zero_labels_when_none_given_and_indices_become_one_hot():
    net = Recorder(label_dim=3)
    pre = EDMPrecond(net)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    pre(x, torch.ones(2))
    assert torch.equal(net.calls[-1]["labels"], torch.zeros(2, 3, dtype=torch.float64))
    pre(x, torch.ones(2), torch.tensor([2, 0]))
    assert torch.equal(net.calls[-1]["labels"], torch.tensor([[0, 0, 1], [1, 0, 0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="classes"):
        pre(x, torch.ones(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="Class indices"):
        pre(x, torch.ones(2), torch.tensor([0, 3]))
    # Unconditional models ignore labels, as EDM does.
    plain = Recorder()
    EDMPrecond(plain)(x, torch.ones(2), torch.tensor([1, 1]))
    assert plain.calls[-1]["labels"] is None


def test_augment_labels_are_passed_only_when_given():
    net = Recorder()
    pre = VEPrecond(net)
    x = torch.randn(2, 2, 4, 4)
    pre(x, torch.ones(2))
    assert net.calls[-1]["augment_labels"] is None
    aug = torch.randn(2, 9)
    pre(x, torch.ones(2), augment_labels=aug)
    assert torch.equal(net.calls[-1]["augment_labels"], aug)


def test_state_dict_names_are_model_dot_and_iddpm_u_comes_first():
    assert list(EDMPrecond(Recorder()).state_dict()) == ["model.w"]
    assert list(IDDPMPrecond(Recorder()).state_dict()) == ["u", "model.w"]


def test_vp_sigma_range_is_exact():
    pre = VPPrecond(Recorder())
    # σ(t) = sqrt(exp(½ β_d t² + β_min t) − 1) at ε_t = 1e-5 and t = 1 (SPEC §3).
    assert pre.sigma_min == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9e-10 + 1e-6)), rel=1e-12)
    assert pre.sigma_min == pytest.approx(0.0010000, rel=1e-3)
    assert pre.sigma_max == pytest.approx(152.16697, rel=1e-6)
    s = torch.tensor([pre.sigma_min, 1.0, pre.sigma_max], dtype=torch.float64)
    torch.testing.assert_close(pre.t_of_sigma(s), torch.tensor([1e-5, pre.t_of_sigma(s)[1].item(), 1.0],
                                                               dtype=torch.float64), rtol=1e-9, atol=0)


def test_vp_c_noise_is_accurate_in_float32_at_small_sigma():
    """log1p keeps float32 c_noise within 1e-6 of float64 where log(1 + σ²) would be 1.3 % off."""
    pre = VPPrecond(Recorder())
    s64 = torch.tensor([0.002, 0.01, 1.0], dtype=torch.float64)
    c32 = pre.coefficients(s64.float())[3].double()
    c64 = pre.coefficients(s64)[3]
    assert ((c32 - c64).abs() / c64).max() < 1e-6


def test_iddpm_noise_levels_match_edm():
    u = iddpm_noise_levels()
    assert u.shape == (1001,) and u.dtype == torch.float32 and u[1000] == 0
    assert bool((u[:-1] > u[1:]).all())
    # EDM's iDDPMPrecond stores sigma_min = u[M-1], sigma_max = u[0] (shared/edm-compat).
    # The float64 table rounded once: the same bits on every CPU.
    assert torch.equal(u, iddpm_sigmas().float())
    # EDM's iDDPMPrecond stores sigma_min = u[M-1], sigma_max = u[0] (shared/edm-compat: 0.0064223371446
    # and 20291.17, its own float32 evaluation, which varies with the CPU by up to 5e-4 relative).
    pre = IDDPMPrecond(Recorder())
    assert pre.sigma_min == pytest.approx(0.006422337144613266, rel=5e-4)
    assert pre.sigma_max == pytest.approx(20291.17, rel=5e-4)


def test_iddpm_rounds_to_the_nearest_level_and_uses_its_index():
    pre = IDDPMPrecond(Recorder())
    u = pre.u.double()
    j = torch.tensor([0, 10, 500, 998])
    mid = (u[j] + u[j + 1]) / 2
    sigma = torch.stack([u[j[0]] * 1.001, u[j[1]] * 0.9999, mid[2] + 1e-9 * u[j[2]], u[j[3]]])
    torch.testing.assert_close(pre.round_sigma(sigma), u[j])
    assert pre.round_sigma(sigma).dtype == torch.float64
    c_noise = pre.coefficients(sigma)[3]
    assert torch.equal(c_noise, (999 - j).double())
    # The learned-variance half of the output is dropped.
    net = Recorder(out_channels=4)
    assert IDDPMPrecond(net)(torch.randn(1, 2, 4, 4), torch.ones(1)).shape == (1, 2, 4, 4)


def test_make_precond_and_shapes():
    assert isinstance(make_precond("ve", Recorder()), VEPrecond)
    pre = make_precond("edm", Recorder(), sigma_data=0.25, name="toy")
    assert (pre.sigma_data, pre.name, pre.shape, pre.label_dim) == (0.25, "toy", (2, 4, 4), 0)
    with pytest.raises(ValueError, match="Unknown preconditioning"):
        make_precond("ddim", Recorder())
    with pytest.raises(ValueError, match="shape"):
        make_precond("edm", torch.nn.Identity())
    assert make_precond("edm", torch.nn.Identity(), shape=(3, 8, 8)).shape == (3, 8, 8)


# ------------------------------------------------------------------ adapters, on a Gaussian

MU, C = 0.3, 0.8  # data N(μ, c² I): D(x; σ) = μ + c²/(c² + σ²)(x − μ)


def _true_D(x, sigma):
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return MU + C**2 / (C**2 + s2) * (x - MU)


def _col(sigma, x):
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def _eps_vp(x_vp, sigma):
    s = _col((sigma**2 + 1).rsqrt(), x_vp)
    x = x_vp / s
    return (x - _true_D(x, sigma)) / _col(sigma, x)


def _v_vp(x_vp, sigma):
    s = _col((sigma**2 + 1).rsqrt(), x_vp)
    x = x_vp / s
    eps = (x - _true_D(x, sigma)) / _col(sigma, x)
    return s * eps - s * _col(sigma, x) * _true_D(x, sigma)


def _score(x, sigma):
    return (_true_D(x, sigma) - x) / _col(sigma, x) ** 2


def _score_vp(x_vp, sigma):
    s = _col((sigma**2 + 1).rsqrt(), x_vp)
    return _score(x_vp / s, sigma) / s


@pytest.mark.parametrize("make", [
    lambda: EpsilonDenoiser(_eps_vp, shape=(3,)),
    lambda: EpsilonDenoiser(lambda x, s: (x - _true_D(x, s)) / _col(s, x), shape=(3,), scaling="none"),
    lambda: X0Denoiser(_true_D, shape=(3,)),
    lambda: VDenoiser(_v_vp, shape=(3,)),
    lambda: ScoreDenoiser(_score, shape=(3,)),
    lambda: ScoreDenoiser(_score_vp, shape=(3,), scaling="vp"),
], ids=["eps-vp", "eps-none", "x0", "v", "score", "score-vp"])
def test_adapters_recover_the_true_denoiser(make):
    den = make()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 4
    torch.testing.assert_close(den(x, SIGMA), _true_D(x, SIGMA), rtol=1e-12, atol=1e-12)


def test_adapters_pass_labels_and_reject_bad_settings():
    seen = []
    den = X0Denoiser(lambda x, s, y: seen.append(y) or x, shape=(2,), label_dim=3)
    den(torch.zeros(1, 2), torch.ones(1), torch.ones(1, 3))
    assert seen[0].shape == (1, 3)
    with pytest.raises(ValueError, match="VP space"):
        VDenoiser(_v_vp, shape=(3,), scaling="none")
    with pytest.raises(ValueError, match="scaling"):
        EpsilonDenoiser(_eps_vp, shape=(3,), scaling="ve")
    net = torch.nn.Linear(3, 3)
    wrapped = X0Denoiser(lambda x, s: net(x), shape=(3,))
    assert list(wrapped.state_dict()) == []
    assert list(X0Denoiser(_ModuleX0(), shape=(3,)).state_dict()) == ["model.w"]


class _ModuleX0(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, sigma):
        return self.w * x
