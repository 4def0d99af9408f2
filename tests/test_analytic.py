"""Analytic denoisers are exact (SPEC §5) and reject malformed input."""
import json
import math

import pytest
import torch

from explorer.core.analytic import TOYS, GMMDenoiser, IdealDenoiser, gmm_from_spec, load_gmm_json, toy


def brute_force_gmm(y, sigma, means, stds, weights):
    out = torch.zeros_like(y)
    for b in range(y.shape[0]):
        logs, posts = [], []
        for mu, s, w in zip(means, stds, weights):
            v = s**2 + sigma**2
            logs.append(math.log(w) - 0.5 * y.shape[1] * math.log(2 * math.pi * v) - float(((y[b] - mu) ** 2).sum()) / (2 * v))
            posts.append(mu + s**2 / v * (y[b] - mu))
        r = torch.softmax(torch.tensor(logs, dtype=torch.float64), 0)
        out[b] = sum(ri * p for ri, p in zip(r, posts))
    return out


def test_gmm_matches_brute_force_in_float64():
    means = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stds, weights = [0.2, 0.5, 0.3, 1.0], [0.1, 0.2, 0.3, 0.4]
    gmm = GMMDenoiser(means, stds, weights, (2, 3))
    y = torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    for sigma in (0.01, 0.7, 30.0):
        got = gmm(y, torch.tensor(sigma, dtype=torch.float64)).reshape(5, 6)
        want = brute_force_gmm(y.reshape(5, 6), sigma, means, stds, [w / sum(weights) for w in weights])
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-13)


def test_ideal_denoiser_limits():
    data = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    ideal = IdealDenoiser(data)
    x = torch.tensor([[0.9, 0.8]], dtype=torch.float64)
    assert torch.allclose(ideal(x, torch.tensor(1e-3, dtype=torch.float64)), data[1:])
    assert torch.allclose(ideal(x, torch.tensor(1e4, dtype=torch.float64)), data.mean(0, keepdim=True), atol=1e-6)


def test_toys_are_2d_mixtures():
    for name in TOYS:
        t = toy(name)
        assert t.shape == (2,) and t.num_components >= 8
        out = t(torch.randn(7, 2), torch.tensor(0.5))
        assert out.shape == (7, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="Unknown toy"):
        toy("banana")


def test_gmm_json(tmp_path):
    spec = {"kind": "gmm", "shape": [2], "means": [[0, 0], [1, 1]], "stds": [0.1, 0.2], "weights": [1, 3]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(spec))
    gmm = load_gmm_json(path)
    assert gmm.shape == (2,) and gmm.name == "m"
    assert gmm_from_spec(gmm.to_spec()).to_spec() == gmm.to_spec()
    bad = [
        ({**spec, "kind": "x"}, "kind"),
        ({k: v for k, v in spec.items() if k != "stds"}, "lacks stds"),
        ({**spec, "stds": [0.1, -1]}, "positive"),
        ({**spec, "weights": [1]}, "'weights' must be a list of 2 numbers"),
        ({**spec, "means": [[0, 0, 0], [1, 1, 1]]}, r"'means\[0\]' must be a list of 2 numbers"),
        ({**spec, "means": [[0], [1, 1]]}, r"'means\[0\]' must be a list of 2 numbers"),
        ({**spec, "shape": "22"}, "'shape' must be a list"),
        ({**spec, "stds": ["0.1", 1]}, "'stds' must be a list of 2 numbers"),
    ]
    for content, message in bad:
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            load_gmm_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_gmm_json(path)
