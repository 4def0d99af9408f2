"""``diffusion-explorer convert``: turn someone else's model into one ``.safetensors`` checkpoint.

Inputs: an official NVlabs EDM network pickle (``edm-*.pkl``, ``network-snapshot-*.pkl``), read
without running any code from it, or a diffusers ``UNet2DModel`` folder. The output carries the
source and licence in its metadata and gets a Markdown model card beside it (``OUT.md``).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an EDM .pkl or a diffusers folder to a .safetensors checkpoint",
                       description=__doc__)
    p.add_argument("source", metavar="MODEL", help="an EDM network pickle (.pkl) or a diffusers UNet2DModel folder")
    p.add_argument("out", metavar="OUT.safetensors", help="the checkpoint to write (a model card OUT.md goes beside it)")
    p.add_argument("--scheduler-config", metavar="FILE.json",
                   help="diffusers only: the scheduler_config.json, if it is not beside the model")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source, out = Path(args.source).expanduser(), Path(args.out).expanduser()
    if not source.exists():
        raise ValueError(f"{source} does not exist.")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to overwrite it.")
    if not out.parent.is_dir():
        raise ValueError(f"The folder {out.parent} does not exist.")
    if source.is_dir():
        from explorer.models.diffusers_import import convert_diffusers_folder

        convert_diffusers_folder(source, out, scheduler_config=args.scheduler_config)
    else:
        if args.scheduler_config:
            raise ValueError("--scheduler-config applies to diffusers folders only.")
        from explorer.models.edm_import import convert_edm_pickle

        convert_edm_pickle(source, out)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
