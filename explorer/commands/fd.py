"""``diffusion-explorer fd``: Fréchet distance of a denoiser's samples to Fashion-MNIST.

Samples are drawn with the engine (any solver, discretization and NFE), featurized by the
shipped Fashion classifier and compared with the cached statistics of the training split.
Lower is better; the test split scores the floor a perfect model could reach (see the
classifier's model card in ``resources/classifier/``).
"""
from __future__ import annotations

import argparse
import time

from explorer.commands.common import add_guidance_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fd",
        help="Fréchet distance of a model's samples to Fashion-MNIST (classifier features)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="fashion32-edm", help="a shipped checkpoint name or a checkpoint file")
    p.add_argument("--process", default="edm", help="vp, ve or edm (default edm)")
    p.add_argument("--disc", default=None, help="discretization (default: the process's own)")
    p.add_argument("--solver", default="heun")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, default=None)
    group.add_argument("--nfe", type=int, default=None, help="budget of network evaluations (default 35)")
    p.add_argument("--num", type=int, default=10_000, help="number of samples")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--classifier", default=None, help="classifier .safetensors (default: the shipped one)")
    p.add_argument("--samples", metavar="DIR", help="score the samples of a `generate` folder instead of sampling here")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files, if the reference statistics must be computed")
    p.add_argument("--label", type=int, default=None, help="class for a class-conditional model (default: unconditional)")
    add_guidance_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from explorer.core.config import RunConfig
    from explorer.core.sampling import resolve_device
    from explorer.models.loader import load_denoiser
    from explorer.train.frechet import fd_against_fashion, reference_statistics
    from explorer.train.preview import batch_sampler

    device = resolve_device(args.device)
    if args.samples:
        return _score_folder(args, device)
    denoiser = load_denoiser(args.model, device=str(device))
    if tuple(denoiser.shape) != (1, 32, 32):
        raise ValueError(f"FD compares with Fashion-MNIST (1x32x32 images); {args.model} draws {tuple(denoiser.shape)}.")
    steps, nfe = args.steps, args.nfe
    if steps is None and nfe is None:
        nfe = 35
    config = RunConfig(process=args.process, disc=args.disc or args.process, solver=args.solver, steps=steps, nfe=nfe,
                       seed=args.seed, batch=min(args.batch, args.num), device=device.type, label=args.label,
                       guidance=args.guidance, guide=args.guide)
    if args.data_dir is not None:
        reference_statistics(data_dir=args.data_dir, device=device)
    start = time.time()
    fd = fd_against_fashion(batch_sampler(denoiser.eval(), config), num=args.num, batch=config.batch,
                            device=device, classifier_path=args.classifier)
    print(f"FD {fd:.4f}  ({args.model}, {args.solver}, {'NFE ' + str(nfe) if nfe else str(steps) + ' steps'}, "
          f"{args.num} samples, {time.time() - start:.0f} s on {device.type})")
    return 0


def _score_folder(args: argparse.Namespace, device) -> int:
    """FD of the images a (possibly multi-GPU) ``generate`` run wrote."""
    from explorer.commands.generate import iter_sample_batches
    from explorer.train.frechet import fd_of_batches

    start = time.time()
    fd = fd_of_batches(iter_sample_batches(args.samples, args.batch), device=device, classifier_path=args.classifier)
    print(f"FD {fd:.4f}  (samples of {args.samples}, {time.time() - start:.0f} s on {device.type})")
    return 0
