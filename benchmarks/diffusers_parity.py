"""The diffusers-preset table of issue #12: relative error and NFE of the explorer's preset run
against diffusers' own scheduler loop, float64, same latents, two tiny UNet2DModels.

Uses the test suite's harness (tests/test_diffusers_presets.py) so the table is what the tests check.

    PYTHONPATH=. python benchmarks/diffusers_parity.py [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class _Patch:
    """A stand-in for pytest's monkeypatch (setattr, undone at the end)."""

    def __init__(self) -> None:
        self.undo: list = []

    def setattr(self, obj, name, value) -> None:
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def restore(self) -> None:
        for obj, name, value in reversed(self.undo):
            setattr(obj, name, value)
        self.undo.clear()


def main() -> None:
    import tempfile

    import test_diffusers_presets as h

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", help="folder for diffusers_parity.md")
    args = p.parse_args()
    torch.set_num_threads(1)

    models = h.build_models(lambda name: Path(tempfile.mkdtemp(prefix=name)))
    lines = ["| model | scheduler | preset | N | relative error | NFE (explorer / diffusers) | note |",
             "|---|---|---|---:|---:|---:|---|"]
    for model, name, karras, steps in h.CASES:
        den, unet, sched = models[model]
        latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
        patch = _Patch()
        try:
            ref, ref_nfe = h.diffusers_loop(unet, h.scheduler(name, sched, karras), latents, steps, patch)
        finally:
            patch.restore()
        ours, nfe = h.explorer_run(den, h.scheduler(name, sched, karras), latents, steps)
        rel = float((ours - ref).norm() / ref.norm())
        note = "diffusers' last step has length 0 (left out)" if h.zero_length_steps(name, karras) else ""
        lines.append(f"| {model} | {name} | {'karras' if karras else 'default'} | {steps} | {rel:.2e} | {nfe} / {ref_nfe} "
                     f"| {note} |")
        print(lines[-1], flush=True)
    lines += ["", "Not reproduced (the preset refuses with the cause): " + "; ".join(
        f"{n}: {why}" for n, why in h.REFUSED.items())]
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "diffusers_parity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
