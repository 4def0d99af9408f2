"""Hostile and malformed files for every reader, built small from valid ones (tests and benchmarks).

Each entry of :func:`build_corpus` is a :class:`Case`: the reader it targets, a file made in a
folder, the ``diffusion-explorer`` arguments that open it, and what must happen ("error": one
line, exit 2; "ran": exit 0). Pickles that would run code write ``SENTINEL`` in that folder if
they ever ran. Used by ``tests/test_hostile_files.py`` and ``benchmarks/hostile_files.py``.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edm_pickle_synth import build_ema, hostile_pickle, snapshot_bytes

SENTINEL = "EXECUTED"
SONG = {"class": "SongUNet", "img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 16,
        "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
EDM_KWARGS = {"img_resolution": 8, "img_channels": 1, "label_dim": 0, "use_fp16": False, "sigma_min": 0.0,
              "sigma_max": float("inf"), "sigma_data": 0.5, "model_type": "SongUNet", "model_channels": 16,
              "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


@dataclass
class Case:
    reader: str
    name: str
    argv: list[str]
    expect: str  # "error" or "ran"


# ------------------------------------------------------------------------------ valid originals

def tiny_checkpoint(path: Path, precond: str = "edm") -> Path:
    from explorer.models.checkpoint import save_checkpoint
    from explorer.models.networks import build_denoiser

    kwargs = {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0} if precond == "edm" else {}
    arch = dict(SONG, out_channels=2) if precond == "iddpm" else SONG
    save_checkpoint(path, build_denoiser(precond, arch, kwargs, name="tiny"), dataset="none")
    return path


def edm_pickle_bytes(protocol: int = 4, kwargs: dict | None = None, extra: dict | None = None) -> bytes:
    from explorer.models.networks import denoiser_from_edm_kwargs

    net = denoiser_from_edm_kwargs("EDMPrecond", EDM_KWARGS)
    ema = build_ema("training.networks.EDMPrecond", dict(kwargs or EDM_KWARGS), net.state_dict())
    return snapshot_bytes(ema, protocol=protocol, extra=extra)


def mixture_spec() -> dict:
    return {"kind": "gmm", "shape": [2], "means": [[0.0, 1.0], [1.0, 0.0]], "stds": [0.1, 0.2], "weights": [1, 2]}


def trajectory_file(folder: Path, name: str = "run.safetensors", denoiser_id: str = "ring") -> Path:
    from explorer.core.config import RunConfig
    from explorer.core.sampling import sample
    from explorer.models.loader import load_denoiser

    traj = sample(load_denoiser("ring"), RunConfig(steps=3, batch=2, device="cpu"), denoiser_id=denoiser_id)
    return traj.save(folder / name)


# ------------------------------------------------------------------------------ raw safetensors

def rewrite_safetensors(src: Path, dst: Path, header_change: Callable[[dict], None]) -> Path:
    """Copy a safetensors file with its JSON header edited (tensor data untouched)."""
    raw = src.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header_change(header)
    text = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return dst


def with_meta(src: Path, dst: Path, **changes) -> Path:
    """A checkpoint whose metadata fields are replaced (values given as Python, stored as JSON text)."""
    def change(header: dict) -> None:
        meta = header["__metadata__"]
        for key, value in changes.items():
            if value is _DROP:
                meta.pop(key, None)
            else:
                meta[key] = value if isinstance(value, _Raw) else json.dumps(value)
    return rewrite_safetensors(src, dst, change)


class _Raw(str):
    """A metadata value stored as-is (not JSON-encoded)."""


_DROP = object()


def nested(depth: int, leaf: object = 0) -> str:
    return "[" * depth + json.dumps(leaf) + "]" * depth


# ------------------------------------------------------------------------------ hostile pickles

def _frame(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def _collision_body(n: int, step: int) -> bytes:
    out = io.BytesIO()
    out.write(b"\x80\x04}(")  # EMPTY_DICT, MARK
    for k in range(1, n + 1):
        out.write(b"\x8a" + _long1(k * step) + b"K\x00")  # LONG1 key, BININT1 0
    out.write(b"u.")  # SETITEMS, STOP
    return out.getvalue()


def _long1(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return bytes([len(data)]) + data


def billion_laughs_pickle(levels: int = 40, fan: int = 10) -> bytes:
    """Each level a list of ``fan`` references to the level below: fan**levels leaves, a few KB on disk."""
    out = io.BytesIO()
    out.write(b"\x80\x04]\x94")  # EMPTY_LIST, MEMOIZE (memo 0)
    for level in range(1, levels + 1):
        out.write(b"(" + (b"h" + bytes([level - 1])) * fan + b"l\x94")  # MARK, BINGET x fan, LIST, MEMOIZE
    out.write(b"}\x94(X\x03\x00\x00\x00emah" + bytes([levels]) + b"u.")
    return out.getvalue()


def deep_pickle(depth: int = 100_000) -> bytes:
    """Lists nested ``depth`` deep by MARK…LIST (C unpicklers recurse or grow the stack)."""
    return b"\x80\x04" + b"(" * depth + b"l" * depth + b"."


def deep_memo_pickle(depth: int = 200_000) -> bytes:
    """Lists nested ``depth`` deep through the memo: each new list gets the previous one appended,
    so the unpickler's stack stays short while the nesting grows."""
    out = io.BytesIO()
    out.write(b"\x80\x04]\x94" + b"0")  # EMPTY_LIST, MEMOIZE (0), POP
    for i in range(1, depth + 1):
        out.write(b"]\x94j" + struct.pack("<I", i - 1) + b"a0")  # new list (memo i), LONG_BINGET i-1, APPEND, POP
    out.write(b"j" + struct.pack("<I", depth) + b".")
    return out.getvalue()


def fp16_bomb_pickle() -> bytes:
    """A snapshot whose ``use_fp16`` kwarg is a billion-laughs structure."""
    body = billion_laughs_pickle(30, 10)
    laughs = pickle.loads(body)["ema"]  # a small object graph (shared references)
    return edm_pickle_bytes(kwargs=dict(EDM_KWARGS, use_fp16=laughs))


def repeated_storage_pickle(copies: int = 20_000) -> bytes:
    """One 64 KB storage payload fed to torch's storage loader ``copies`` times via the memo (GB if accepted)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but it is what EDM pickles hold
        torch.save(torch.zeros(16384).storage(), buf, _use_new_zipfile_serialization=False)
    payload = buf.getvalue()
    out = io.BytesIO()
    out.write(b"\x80\x04ctorch.storage\n_load_from_bytes\n\x94")  # GLOBAL, memo 0
    out.write(b"B" + struct.pack("<I", len(payload)) + payload + b"\x94")  # BINBYTES, memo 1
    out.write(b"]\x94(")  # list, memo 2, MARK
    for _ in range(copies):
        out.write(b"h\x00h\x01\x85R")  # BINGET fn, BINGET bytes, TUPLE1, REDUCE
    out.write(b"e.")
    return out.getvalue()


def long_claim_pickle() -> bytes:
    """BINBYTES8 claiming 2⁶² bytes."""
    return b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"xx."


# ------------------------------------------------------------------------------ arrays

def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def forged_npy(shape: tuple[int, ...]) -> bytes:
    """A .npy header claiming ``shape`` float64, followed by only 64 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue() + bytes(64)


def zip_bomb(path: Path, megabytes: int = 512) -> Path:  # 8 MB is enough to be refused as a bomb
    """An .npz whose one member inflates to ``megabytes`` of zeros (about 0.1 % of that on disk)."""
    header = io.BytesIO()
    count = megabytes * 1024 * 1024 // 8
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (count // 2, 2)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("noise.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            block = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(block)
    return path


# ------------------------------------------------------------------------------ the corpus

def build_corpus(folder: Path, bombs: bool = True, small: bool = False) -> list[Case]:
    """Write every hostile file into ``folder``.

    ``bombs=False`` makes the zip bomb 8 MB instead of 512 MB; ``small=True`` makes the nesting
    and size attacks just big enough to be refused (for the test suite's time budget).
    """
    big = 1 if small else 100
    (folder / "out").mkdir(parents=True, exist_ok=True)
    f = folder
    sentinel = f / SENTINEL
    cases: list[Case] = []

    def add(reader: str, name: str, argv: list[str], expect: str = "error") -> None:
        cases.append(Case(reader, name, argv, expect))

    def model(name: str, expect: str = "error") -> None:
        add(_reader_of(name), name, ["sample", "--model", str(f / name), "--steps", "2", "--batch", "1",
                                      "--out", str(f / "out" / (Path(name).stem + ".safetensors"))], expect)

    # checkpoints --------------------------------------------------------------
    good = tiny_checkpoint(f / "ckpt_valid.safetensors")
    model("ckpt_valid.safetensors", "ran")
    arch = json.loads(load_meta(good)["arch"])
    variants = {
        "ckpt_meta_list": lambda h: h.__setitem__("__metadata__", ["format", "edm"]),
        "ckpt_entry_string_shape": lambda h: next(v for k, v in h.items() if k != "__metadata__").__setitem__("shape", "22"),
    }
    for name, change in variants.items():
        rewrite_safetensors(good, f / f"{name}.safetensors", change)
        model(f"{name}.safetensors")
    metas = {
        "ckpt_arch_list": dict(arch=[1, 2]),
        "ckpt_zero_channels": dict(arch=dict(arch, model_channels=0)),
        "ckpt_zero_shape": dict(shape=[0, 8, 8], arch=dict(arch, in_channels=0, out_channels=0)),
        "ckpt_giant_image": dict(shape=[1, 1_000_000, 1_000_000], arch=dict(arch, img_resolution=1_000_000)),
        "ckpt_negative_sigma_data": dict(sigma_data=-0.5, precond_kwargs={"sigma_data": -0.5}),
        "ckpt_sigma_string": dict(sigma_min="many"),
        "ckpt_label_dim_string": dict(label_dim="many"),
        "ckpt_wrong_precond_kwargs": dict(precond_kwargs={"beta_d": 19.9, "beta_min": 0.1}),
        "ckpt_wrong_precond_loss": dict(train={"loss": "vp"}),
        "ckpt_deep_json": dict(train=_Raw(nested(500 * big))),
        "ckpt_arch_bomb_list": dict(arch=dict(arch, channel_mult=[1] * (10_000 * big))),
    }
    for name, changes in metas.items():
        with_meta(good, f / f"{name}.safetensors", **changes)
        model(f"{name}.safetensors")
    vp = tiny_checkpoint(f / "ckpt_vp.safetensors", "vp")
    iddpm = tiny_checkpoint(f / "ckpt_iddpm.safetensors", "iddpm")
    iddpm_kwargs = json.loads(load_meta(iddpm)["precond_kwargs"])
    vp_kwargs = json.loads(load_meta(vp)["precond_kwargs"])
    for name, src, changes in (
        ("ckpt_iddpm_negative_M", iddpm, dict(precond_kwargs=dict(iddpm_kwargs, M=-5))),
        ("ckpt_iddpm_huge_M", iddpm, dict(precond_kwargs=dict(iddpm_kwargs, M=10**12))),
        ("ckpt_vp_huge_beta", vp, dict(precond_kwargs=dict(vp_kwargs, beta_d=1e300))),
        ("ckpt_vp_negative_beta", vp, dict(precond_kwargs=dict(vp_kwargs, beta_d=-50.0, beta_min=-10.0))),
    ):
        with_meta(src, f / f"{name}.safetensors", **changes)
        model(f"{name}.safetensors")
    raw = good.read_bytes()
    for name, data in (("ckpt_truncated", raw[: len(raw) // 2]), ("ckpt_header_only", raw[:8]),
                       ("ckpt_huge_header_len", struct.pack("<Q", 2**60) + raw[8:])):
        (f / f"{name}.safetensors").write_bytes(data)
        model(f"{name}.safetensors")

    # EDM pickles --------------------------------------------------------------
    pickles = {
        "pkl_valid_p2": (edm_pickle_bytes(protocol=2), "ran"),
        "pkl_valid_p3": (edm_pickle_bytes(protocol=3), "ran"),
        "pkl_valid_p4": (edm_pickle_bytes(protocol=4), "ran"),
        "pkl_exec_os_system": (hostile_pickle("os", "system", [f"touch {sentinel}"]), "error"),
        "pkl_exec_builtins_exec": (hostile_pickle("builtins", "exec", [f"open({str(sentinel)!r}, 'w')"]), "error"),
        "pkl_hash_collision": (_collision_body(2_000 * big, 2**61 - 1), "error"),
        "pkl_billion_laughs": (billion_laughs_pickle(), "error"),
        "pkl_deep_marks": (deep_pickle(1_000 * big), "error"),
        "pkl_deep_memo": (deep_memo_pickle(2_000 * big), "error"),
        "pkl_fp16_bomb": (fp16_bomb_pickle(), "error"),
        "pkl_huge_network": (edm_pickle_bytes(kwargs=dict(EDM_KWARGS, model_channels=4096, channel_mult=[1, 2, 4, 8],
                                                          num_blocks=32)), "error"),
        "pkl_huge_kwargs_channels": (edm_pickle_bytes(kwargs=dict(EDM_KWARGS, model_channels=10**9)), "error"),
        "pkl_repeated_storage": (repeated_storage_pickle(), "error"),
        "pkl_long_claim": (long_claim_pickle(), "error"),
        "pkl_empty": (b"", "error"),
        "pkl_bogus": (b"\x80\x04garbage", "error"),
    }
    valid = pickles["pkl_valid_p4"][0]
    pickles["pkl_truncated"] = (valid[: len(valid) // 2], "error")
    for name, (data, expect) in pickles.items():
        (f / f"{name}.pkl").write_bytes(data)
        model(f"{name}.pkl", expect)
    add("convert", "convert_pkl_billion_laughs", ["convert", str(f / "pkl_billion_laughs.pkl"),
                                                   str(f / "out" / "converted.safetensors")])
    add("convert", "convert_pkl_valid", ["convert", str(f / "pkl_valid_p2.pkl"),
                                          str(f / "out" / "converted_ok.safetensors")], "ran")

    # mixture JSON -------------------------------------------------------------
    mixtures = {
        "mix_valid": (mixture_spec(), "ran"),
        "mix_string_shape": (dict(mixture_spec(), shape="22"), "error"),
        "mix_string_std": (dict(mixture_spec(), stds=["0.1", 0.2]), "error"),
        "mix_dict_means": (dict(mixture_spec(), means={"a": 1}), "error"),
        "mix_huge_shape": (dict(mixture_spec(), shape=[10**6, 10**6]), "error"),
        "mix_negative_shape": (dict(mixture_spec(), shape=[-2]), "error"),
    }
    for name, (spec, expect) in mixtures.items():
        (f / f"{name}.json").write_text(json.dumps(spec))
        model(f"{name}.json", expect)
    (f / "mix_deep.json").write_text('{"kind": "gmm", "shape": ' + nested(1_000 * big) + "}")
    model("mix_deep.json")
    (f / "mix_binary.json").write_bytes(b"\xff\xfe\x00garbage")
    model("mix_binary.json")

    # diffusers folders --------------------------------------------------------
    for name, sched, config in (
        ("diff_huge_timesteps", {"num_train_timesteps": 10**12}, {}),
        ("diff_string_timesteps", {"num_train_timesteps": "many"}, {}),
        ("diff_huge_sample", {}, {"sample_size": 10**6}),
        ("diff_huge_channels", {}, {"block_out_channels": [8192] * 8, "down_block_types": ["DownBlock2D"] * 8,
                                    "up_block_types": ["UpBlock2D"] * 8}),
        ("diff_deep_config", {"beta_schedule": json.loads(nested(30))}, {}),
    ):
        d = f / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1,
                                                   "out_channels": 1, "block_out_channels": [8], "norm_num_groups": 4,
                                                   "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"],
                                                   **config}))
        (d / "scheduler_config.json").write_text(json.dumps({"beta_schedule": "linear", **sched}))
        save_file({"x": torch.zeros(1)}, str(d / "diffusion_pytorch_model.safetensors"))
        model(name)

    # noise arrays -------------------------------------------------------------
    def noise(name: str, expect: str = "error") -> None:
        add("noise", name, ["sample", "--model", "ring", "--noise", str(f / name), "--steps", "2",
                            "--out", str(f / "out" / (Path(name).stem + ".safetensors"))], expect)

    (f / "noise_valid.npy").write_bytes(npy_bytes(np.random.default_rng(0).standard_normal((2, 2))))
    noise("noise_valid.npy", "ran")
    np.savez(f / "noise_valid.npz", noise=np.random.default_rng(0).standard_normal((2, 2)))
    noise("noise_valid.npz", "ran")
    (f / "noise_forged_shape.npy").write_bytes(forged_npy((10**6, 10**6)))
    noise("noise_forged_shape.npy")
    (f / "noise_object.npy").write_bytes(npy_bytes(np.array([{"a": 1}], dtype=object)))
    noise("noise_object.npy")
    with zipfile.ZipFile(f / "noise_forged_member.npz", "w") as archive:
        archive.writestr("noise.npy", forged_npy((10**5, 10**5)))
    noise("noise_forged_member.npz")
    zip_bomb(f / "noise_zip_bomb.npz", 512 if bombs else 8)
    noise("noise_zip_bomb.npz")
    save_file({"noise": torch.zeros(3, 5)}, str(f / "noise_wrong_shape.safetensors"))
    noise("noise_wrong_shape.safetensors")
    (f / "noise_truncated.safetensors").write_bytes((f / "noise_wrong_shape.safetensors").read_bytes()[:40])
    noise("noise_truncated.safetensors")

    # trajectories and export --------------------------------------------------
    traj = trajectory_file(f)

    def export(name: str, expect: str = "error") -> None:
        add("export", name, ["export", str(f / name), "--out", str(f / "out" / f"export_{Path(name).stem}"),
                             "--only", "samples"], expect)

    export("run.safetensors", "ran")
    tensors = load_file(str(traj))
    meta = load_meta(traj)

    def traj_variant(name: str, tensor_changes: dict, meta_changes: dict) -> None:
        t = {**tensors, **tensor_changes}
        t = {k: v for k, v in t.items() if v is not None}
        m = {k: v for k, v in {**meta, **meta_changes}.items() if v is not None}
        save_file(t, str(f / name), metadata=m)

    traj_variant("traj_short_sigma.safetensors", {"sigma": tensors["sigma"][:2]}, {})
    traj_variant("traj_no_x.safetensors", {"x": None}, {})
    traj_variant("traj_nan_sigma.safetensors", {"sigma": torch.full_like(tensors["sigma"], float("nan"))}, {})
    traj_variant("traj_nfe_many.safetensors", {}, {"nfe": "many"})
    traj_variant("traj_config_list_process.safetensors", {}, {"config": json.dumps({"process": ["edm"]})})
    traj_variant("traj_config_string_rho.safetensors", {}, {"config": json.dumps({"rho": "seven"})})
    traj_variant("traj_deep_extra.safetensors", {}, {"extra": nested(1_000 * big)})
    traj_variant("traj_bad_range.safetensors", {}, {"data_range": json.dumps([1, "x"])})
    for name in ("traj_short_sigma", "traj_no_x", "traj_nan_sigma", "traj_nfe_many", "traj_config_list_process",
                 "traj_config_string_rho", "traj_deep_extra", "traj_bad_range"):
        export(f"{name}.safetensors")
    # A file that names a pickle bomb, /dev/zero or a deep JSON as its model: export must not open them.
    for name, target in (("traj_names_bomb", f / "pkl_billion_laughs.pkl"), ("traj_names_dev_zero", Path("/dev/zero")),
                         ("traj_names_deep_json", f / "mix_deep.json"), ("traj_names_parent", Path("../../etc/x.pkl"))):
        traj_variant(f"{name}.safetensors", {}, {"denoiser": str(target), "data_range": None})
        export(f"{name}.safetensors", "ran")

    # comparison files ---------------------------------------------------------
    def compare(name: str, doc: object, expect: str = "error") -> None:
        (f / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
        add("compare", name, ["compare", "--config", str(f / name), "--out", str(f / "out" / f"cmp_{Path(name).stem}"),
                              "--only", "samples"], expect)

    column = {"solver": "euler", "steps": 2, "batch": 2}
    base = {"model": "ring", "columns": [column], "batch": 2, "reference": False}
    compare("cmp_valid.json", base, "ran")
    compare("cmp_string_steps.json", dict(base, columns=[dict(column, steps="many")]))
    compare("cmp_string_rho.json", dict(base, columns=[dict(column, rho="seven")]))
    compare("cmp_list_process.json", dict(base, columns=[dict(column, process=["edm"])]))
    compare("cmp_string_seed.json", dict(base, seed="0"))
    compare("cmp_columns_dict.json", dict(base, columns={"a": 1}))
    compare("cmp_deep.json", '{"model": "ring", "columns": ' + nested(1_000 * big) + "}")
    bundle = _bundle(f)
    export(bundle.name, "ran")
    b_tensors, b_meta = load_file(str(bundle)), load_meta(bundle)
    save_file({k: v for k, v in b_tensors.items() if k != "noise"}, str(f / "bundle_no_noise.safetensors"), metadata=b_meta)
    export("bundle_no_noise.safetensors")
    save_file(b_tensors, str(f / "bundle_bad_runs.safetensors"), metadata=dict(b_meta, runs=json.dumps({"7": {}})))
    export("bundle_bad_runs.safetensors")
    save_file(b_tensors, str(f / "bundle_string_comparison.safetensors"),
              metadata=dict(b_meta, comparison=json.dumps({"model": "ring", "columns": [dict(column, alpha="x")]})))
    export("bundle_string_comparison.safetensors")
    return cases


def _bundle(folder: Path) -> Path:
    from explorer.cli import main

    out = folder / "bundle_src"
    code = main(["compare", "--model", "ring", "--solvers", "euler,heun", "--steps", "2", "--batch", "2",
                 "--no-reference", "--only", "trajectories", "--out", str(out)])
    assert code == 0
    return (out / "comparison.safetensors").rename(folder / "bundle_valid.safetensors")


def load_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _reader_of(name: str) -> str:
    return {"ckpt": "checkpoint", "pkl": "edm-pickle", "mix": "mixture-json", "diff": "diffusers"}[name.split("_")[0]]
