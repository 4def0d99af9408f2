"""Fréchet distance: closed forms on Gaussians, identical sets, and the shipped classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.models.classifier import DEFAULT_CLASSIFIER, FashionClassifier, load_classifier, save_classifier
from explorer.train import frechet
from explorer.train.datasets import FASHION_DIR


def test_fd_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    mu, cov = frechet.feature_statistics(feats)
    assert abs(frechet.frechet_distance(mu, cov, mu, cov)) < 1e-8


def test_fd_closed_form_for_commuting_gaussians():
    # Diagonal covariances commute: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = 9 + 4 + sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_fd_general_covariances_match_the_wasserstein_formula():
    # For general SPD matrices, tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2): an independent route.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    w2 = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(w2, 0, None)).sum()
    assert frechet.frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-8)


def test_fd_of_samples_converges_to_the_known_value():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(200_000, 2))
    y = rng.normal(0.5, 2.0, size=(200_000, 2))
    fd = frechet.frechet_distance(*frechet.feature_statistics(x), *frechet.feature_statistics(y))
    assert fd == pytest.approx(2 * 0.25 + 2 * (2 - 1) ** 2, rel=0.02)  # = 2.5


def test_fd_rejects_mismatched_or_too_few_features():
    with pytest.raises(ValueError, match="dimensions"):
        frechet.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="at least two"):
        frechet.feature_statistics(np.zeros((1, 4)))


def test_sampler_batches_split_clamp_and_reject_nan():
    calls = []

    def fn(size, index):
        calls.append((size, index))
        return torch.full((size, 1, 32, 32), 3.0)

    batches = list(frechet.sampler_batches(fn, 25, 10))
    assert calls == [(10, 0), (10, 1), (5, 2)] and all(float(b.max()) == 1.0 for b in batches)
    with pytest.raises(ValueError, match="NaN"):
        list(frechet.sampler_batches(lambda n, i: torch.full((n, 1, 32, 32), float("nan")), 4, 4))


def test_classifier_roundtrip(tmp_path):
    model = FashionClassifier().eval()
    save_classifier(tmp_path / "c.safetensors", model, {"test_accuracy": 0.5})
    loaded, info = load_classifier(tmp_path / "c.safetensors")
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded.features(x), model.features(x))
    assert info == {"test_accuracy": 0.5} and loaded.features(x).shape == (4, 128)
    with pytest.raises(ValueError, match="1, 32, 32"):
        loaded.features(torch.zeros(2, 3, 32, 32))


@pytest.mark.skipif(not DEFAULT_CLASSIFIER.is_file(), reason="classifier not trained yet")
def test_shipped_classifier_accuracy_and_reference_statistics():
    model, info = load_classifier()
    assert info["test_accuracy"] >= 0.90
    mu, cov = frechet.reference_statistics(model)  # the cached file
    assert mu.shape == (128,) and cov.shape == (128, 128)
    if (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        from explorer.train.classify import accuracy
        from explorer.train.datasets import load_fashion

        test = load_fashion("test")
        assert accuracy(model, test.images[:2000], test.labels[:2000]) >= 0.88
        feats = frechet.extract_features(model, frechet.tensor_batches(test.images[:2000]))
        floor = frechet.frechet_distance(*frechet.feature_statistics(feats), mu, cov)
        noise = frechet.extract_features(model, [torch.rand(2000, 1, 32, 32) * 2 - 1])
        assert floor < 0.05 * frechet.frechet_distance(*frechet.feature_statistics(noise), mu, cov)


def test_fd_command_runs_on_a_shipped_model(capsys):
    from explorer.cli import main
    from explorer.models.loader import shipped_checkpoints

    if "fashion32-edm" not in shipped_checkpoints() or not DEFAULT_CLASSIFIER.is_file():
        pytest.skip("checkpoint or classifier not shipped")
    assert main(["fd", "--model", "fashion32-edm", "--num", "16", "--batch", "8", "--steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FD ") and float(out.split()[1]) > 0
    assert main(["fd", "--model", "emoji32-edm", "--num", "4", "--steps", "1", "--device", "cpu"]) == 2  # RGB: refused
    assert main(["fd", "--model", "no-such-model"]) == 2


def test_fd_scores_a_generate_folder(tmp_path, capsys):
    """`fd --samples DIR` reads what `generate` wrote (any number of ranks) and prints a finite FD."""
    from explorer.cli import main

    out = tmp_path / "gen"
    assert main(["generate", "--model", "fashion32-edm", "--seeds", "0-5", "--steps", "2", "--batch", "3",
                 "--device", "cpu", "--out", str(out), "--no-images"]) == 0
    capsys.readouterr()
    assert main(["fd", "--samples", str(out), "--batch", "4", "--device", "cpu"]) == 0
    value = float(capsys.readouterr().out.split()[1])
    assert value > 0 and value < float("inf")
