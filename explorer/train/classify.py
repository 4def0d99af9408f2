"""Train the Fashion-MNIST feature classifier shipped in ``resources/classifier/``.

Run ``python -m explorer.train.classify --out resources/classifier/fashion_classifier.safetensors``.
A few epochs of Adam with a cosine learning rate, random mirror and ±2 pixel shifts, on the
training split only; the test split measures accuracy and never touches training.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Optional

import torch
import torch.nn.functional as F

from explorer.models.classifier import DEFAULT_CLASSIFIER, FashionClassifier, save_classifier
from explorer.train.datasets import load_fashion


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal mirror and a random shift of up to ``shift`` pixels (edge = background)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]


@torch.no_grad()
def accuracy(model: FashionClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Fraction of images whose arg-max logit is the label."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += int((model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
    return correct / len(images)


def train_classifier(
    epochs: int = 6,
    batch: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    data_dir: Optional[str] = None,
    limit: Optional[int] = None,
    log=print,
) -> tuple[FashionClassifier, dict]:
    """Train on the training split; returns the model and a dict of how it went."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, test = load_fashion("train", data_dir), load_fashion("test", data_dir)
    x, y = train.images[:limit], train.labels[:limit]
    model = FashionClassifier()
    steps = epochs * math.ceil(len(x) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(augment(x[idx], gen)), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = accuracy(model, test.images, test.labels)
        log(f"epoch {epoch + 1}/{epochs}  loss {total / len(x):.4f}  test accuracy {acc:.4f}  {time.time() - start:.0f} s")
    info = {
        "dataset": "fashion-mnist train split (60000 images, MIT licence)",
        "train_images": len(x),
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "test_accuracy": acc,
        "cpu_seconds": round(time.time() - start, 1),
    }
    return model.eval(), info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(DEFAULT_CLASSIFIER))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, info = train_classifier(args.epochs, args.batch, args.lr, args.seed, args.data_dir)
    save_classifier(args.out, model, info)
    print(f"saved {args.out}: test accuracy {info['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
