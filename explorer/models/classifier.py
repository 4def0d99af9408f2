"""A small Fashion-MNIST classifier whose penultimate features define a Fréchet distance.

Inception features (FID) know nothing of 32x32 grey garments, so the explorer ships its own
feature extractor: a three-stage CNN trained on the Fashion-MNIST training split. Its
128-dimensional penultimate activations play the role of Inception's pool features; the
Fréchet distance between the Gaussians fitted to the features of two image sets is the
explorer's "FD" (lower is closer to the data).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

CLASSIFIER_FORMAT = "explorer-classifier/1"
RESOURCE_DIR = Path(__file__).resolve().parents[2] / "resources" / "classifier"
DEFAULT_CLASSIFIER = RESOURCE_DIR / "fashion_classifier.safetensors"


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FashionClassifier(nn.Module):
    """Conv 32-64-128 (each halving the resolution), then a 128-d feature layer and 10 logits.

    Input: ``[B, 1, 32, 32]`` in [-1, 1], the explorer's data range.
    """

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 128), feature_dim: int = 128, num_classes: int = 10):
        super().__init__()
        self.arch = {"channels": list(channels), "feature_dim": feature_dim, "num_classes": num_classes}
        c1, c2, c3 = channels
        self.body = nn.Sequential(_stage(1, c1), _stage(c1, c2), _stage(c2, c3), nn.Flatten())
        self.features_layer = nn.Sequential(nn.Linear(c3 * 4 * 4, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``[B, feature_dim]`` (what the Fréchet distance compares)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 32, 32):
            raise ValueError(f"The Fashion classifier takes images of shape [B, 1, 32, 32], got {tuple(x.shape)}.")
        return self.features_layer(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def save_classifier(path: Union[str, os.PathLike], model: FashionClassifier, info: dict) -> None:
    """Write weights and metadata (architecture, accuracy, how it was trained) to ``.safetensors``."""
    from safetensors.torch import save_file

    meta = {"format": CLASSIFIER_FORMAT, "arch": json.dumps(model.arch), "info": json.dumps(info)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def load_classifier(path: Optional[Union[str, os.PathLike]] = None, device: str = "cpu") -> tuple[FashionClassifier, dict]:
    """Load a classifier saved by :func:`save_classifier`; returns the model (eval mode) and its info."""
    from safetensors import safe_open

    path = Path(path) if path is not None else DEFAULT_CLASSIFIER
    if not path.is_file():
        raise FileNotFoundError(f"Classifier weights not found at {path}.")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != CLASSIFIER_FORMAT:
            raise ValueError(f"{path} is not an explorer classifier (format {meta.get('format')!r}).")
        state = {k: f.get_tensor(k) for k in f.keys()}
    arch = json.loads(meta["arch"])
    model = FashionClassifier(tuple(arch["channels"]), arch["feature_dim"], arch["num_classes"])
    model.load_state_dict(state)
    return model.to(device).eval(), json.loads(meta.get("info", "{}"))
