"""Files from strangers (issue #16): every malformed or hostile input is one clear line, bounded, inert.

The corpus (tests/hostile_corpus.py) holds one file for each traceback, hang and blow-up the
issue names, and the valid originals they were made from; each goes through the CLI in-process.
The fuzz tests make malformed files from valid ones (truncation, byte damage, type swaps, size
inflation, nesting) and require ValueError or success, under an address-space limit, with a
sentinel file that any executed payload would create. ``benchmarks/hostile_files.py`` measures
the same corpus (time and peak memory per file).
"""
from __future__ import annotations

import contextlib
import json
import resource
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.cli import main
from hostile_corpus import SENTINEL, build_corpus, edm_pickle_bytes, mixture_spec, tiny_checkpoint, trajectory_file

READERS = ["checkpoint", "edm-pickle", "convert", "mixture-json", "diffusers", "noise", "export", "compare"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_corpus(folder, bombs=False, small=True)


@pytest.mark.parametrize("reader", READERS)
def test_every_hostile_file_is_one_clear_line_and_valid_ones_run(corpus, reader, capsys):
    folder, cases = corpus
    mine = [c for c in cases if c.reader == reader]
    assert mine
    wrong = []
    for case in mine:
        code = main(case.argv)
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("diffusion-explorer: error:")]
        if case.expect == "ran":
            ok = code == 0
        else:
            ok = code == 2 and len(errors) == 1
        if not ok:
            wrong.append(f"{case.name}: exit {code}: {err.strip()[-300:]}")
    assert not wrong, "\n".join(wrong)
    assert not (folder / SENTINEL).exists()


def test_messages_name_the_file_field_and_limit(corpus, capsys):
    folder, cases = corpus
    expected = {
        "ckpt_giant_image.safetensors": ("ckpt_giant_image", "'shape'[1]", "2,048"),
        "ckpt_iddpm_huge_M.safetensors": ("ckpt_iddpm_huge_M", "'M'", "10,000"),
        "ckpt_zero_channels.safetensors": ("ckpt_zero_channels", "model_channels", "from 1"),
        "ckpt_negative_sigma_data.safetensors": ("sigma_data", "> 0"),
        "ckpt_wrong_precond_kwargs.safetensors": ("beta_d", "vp preconditioning"),
        "pkl_deep_memo.pkl": ("pkl_deep_memo.pkl", "nesting deeper than 100"),
        "pkl_deep_marks.pkl": ("nesting deeper than 100",),
        "pkl_billion_laughs.pkl": ("more than 2,000,000 objects",),
        "pkl_hash_collision.pkl": ("int key",),
        "pkl_repeated_storage.pkl": ("tensor storage", "more than the file holds"),
        "pkl_huge_network.pkl": ("parameters", "1,000,000,000"),
        "mix_deep.json": ("mix_deep.json", "nesting deeper than 64"),
        "mix_string_shape.json": ("'shape'", "positive integers"),
        "diff_huge_timesteps": ("num_train_timesteps", "100,000"),
        "noise_zip_bomb.npz": ("noise_zip_bomb.npz", "zip bomb"),
        "noise_forged_shape.npy": ("noise_forged_shape.npy", "larger than the limit"),
        "traj_short_sigma.safetensors": ("'sigma'", "needs [4]"),
        "traj_nfe_many.safetensors": ("'nfe'", "non-negative integer"),
        "bundle_no_noise.safetensors": ("bundle_no_noise.safetensors", "'noise'"),
        "cmp_string_steps.json": ("cmp_string_steps.json", "'steps'", "an integer"),
        "cmp_list_process.json": ("'process'", "a string"),
    }
    by_name = {c.name: c for c in cases}
    for name, words in expected.items():
        assert main(by_name[name].argv) == 2
        err = capsys.readouterr().err
        for word in words:
            assert word in err, (name, word, err)


def test_export_never_opens_the_model_a_file_names(corpus, capsys):
    folder, cases = corpus
    case = next(c for c in cases if c.name == "traj_names_dev_zero.safetensors")
    assert main(case.argv) == 0
    assert "does not record its data range" in capsys.readouterr().err
    out = Path(case.argv[case.argv.index("--out") + 1])
    assert (out / "samples_traj_names_dev_zero.png").is_file()


def test_export_keeps_the_data_range_stored_in_the_file(tmp_path, capsys):
    assert main(["sample", "--model", "ring", "--steps", "2", "--batch", "2", "--out", str(tmp_path / "r.safetensors")]) == 0
    from explorer.core.trajectory import Trajectory

    stored = Trajectory.load(tmp_path / "r.safetensors").data_range
    from explorer.models.loader import load_denoiser

    assert stored == tuple(load_denoiser("ring").data_range)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "r.safetensors"), "--out", str(tmp_path / "e"), "--only", "samples"]) == 0
    assert "data range" not in capsys.readouterr().err


def test_a_failed_export_removes_what_it_wrote(tmp_path, monkeypatch):
    from explorer.core.trajectory import Trajectory
    from explorer.export import comparison
    from explorer.export.options import ExportOptions

    traj = Trajectory.load(trajectory_file(tmp_path))

    def broken(*args, **kwargs):
        raise ValueError("Could not write the film strip: disk full.")

    monkeypatch.setattr(comparison.steps, "film_strip", broken)
    out = tmp_path / "new"
    with pytest.raises(ValueError, match="disk full"):
        comparison.export_run(traj, out, (-1.0, 1.0), ExportOptions(), "r")
    assert not out.exists()  # the grid written first is gone, and the folder this call made
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError):
        comparison.export_run(traj, tmp_path / "old", (-1.0, 1.0), ExportOptions(), "r")
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["keep.txt"]


def test_library_write_errors_are_one_line_and_leave_no_file(tmp_path, monkeypatch):
    import safetensors.torch

    from explorer.core.files import save_safetensors, write_text

    class SafetensorError(Exception):
        pass

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(ValueError, match="No space left"):
        save_safetensors({"a": torch.zeros(2)}, {}, tmp_path / "c.safetensors")
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(ValueError, match="No space left"):
        write_text("# card", tmp_path / "c.md")
    assert list(tmp_path.iterdir()) == []  # no partial checkpoint, no 0-byte card, no temporary file


def test_adaptive_solver_names_a_nan_error_estimate(tmp_path, capsys):
    spec = dict(mixture_spec(), means=[[1e308, -1e308], [-1e308, 1e308]])
    (tmp_path / "nan.json").write_text(json.dumps(spec))
    code = main(["sample", "--model", str(tmp_path / "nan.json"), "--solver", "dpm-solver-12", "--batch", "1",
                 "--out", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "error estimate of step 1" in err and "σ =" in err and "NaN or infinity" in err


def test_protocol_2_and_3_pickles_with_sets_load(tmp_path):
    from explorer.models.edm_pickle import read_edm_snapshot

    for protocol in (2, 3):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(edm_pickle_bytes(protocol=protocol))
        state = read_edm_snapshot(path)["ema"].state
        assert state["_non_persistent_buffers_set"] == set()


# ------------------------------------------------------------------------------ fuzzing

@contextlib.contextmanager
def bounded(seconds: int = 60, extra_bytes: int = 3 * 1024**3):
    """Address space limited to what the process has now plus ``extra_bytes``; a watchdog for hangs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        now = int(fh.read().split()[0]) * resource.getpagesize()
    limit = now + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, now + extra_bytes)

    def hang(*_):
        raise TimeoutError(f"a reader ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _accepts_or_refuses(read, *args) -> None:
    with bounded():
        try:
            read(*args)
        except ValueError as err:
            assert str(err).strip() and "\n" not in str(err).strip()


HOSTILE_VALUES = st.sampled_from(["many", [1, 2], {"a": 1}, None, -1, 0, 10**30, 1e308, -1e308, "inf", "nan", True,
                                  "[" * 5000, [[[[[[[[[[0]]]]]]]]]]])


def _mutate_json(value, data):
    """One change deep inside a JSON value: a type swap, an inflated number, or deeper nesting."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate_json(value[key], data)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        return value[:i] + [_mutate_json(value[i], data)] + value[i + 1:]
    kind = data.draw(st.sampled_from(["swap", "inflate", "nest"]))
    if kind == "inflate" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * data.draw(st.sampled_from([10**3, 10**9, 10**18, -1]))
    if kind == "nest":
        return [[[[[value]]]]] if data.draw(st.booleans()) else json.loads("[" * 200 + "0" + "]" * 200)
    return data.draw(HOSTILE_VALUES)


FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("originals")
    from hostile_corpus import load_meta

    ckpt = tiny_checkpoint(folder / "c.safetensors")
    traj = trajectory_file(folder)
    (folder / "p2.pkl").write_bytes(edm_pickle_bytes(protocol=2))
    (folder / "p4.pkl").write_bytes(edm_pickle_bytes(protocol=4))
    return {"folder": folder, "ckpt": ckpt, "ckpt_meta": load_meta(ckpt), "traj": traj, "traj_meta": load_meta(traj)}


def _header_with(path: Path, meta: dict) -> bytes:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = meta
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoints_are_loaded_or_refused(originals, tmp_path, data):
    from explorer.models.loader import load_denoiser

    meta = originals["ckpt_meta"]
    key = data.draw(st.sampled_from(sorted(meta)))
    decoded = json.loads(meta[key])
    meta = dict(meta, **{key: json.dumps(_mutate_json(decoded, data))})
    raw = _header_with(originals["ckpt"], meta)
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = originals["folder"] / "fuzz.safetensors"
    path.write_bytes(raw)
    _accepts_or_refuses(load_denoiser, str(path))


@FUZZ
@given(data=st.data())
def test_fuzzed_pickles_are_loaded_or_refused_and_never_run(originals, data):
    from explorer.models.edm_import import load_edm_pickle

    raw = bytearray((originals["folder"] / data.draw(st.sampled_from(["p2.pkl", "p4.pkl"]))).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        if len(raw) < 4:
            break
        action = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        at = data.draw(st.integers(2, len(raw) - 1))
        if action == "cut":
            raw = raw[:at]
        elif action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        else:
            sentinel = originals["folder"] / SENTINEL
            fragment = data.draw(st.sampled_from([b"(" * 300, b"]\x94h\x00" * 50, b"\x8e" + struct.pack("<Q", 2**60),
                                                  f"cos\nsystem\n(X\x00\x00\x00\x00touch {sentinel}tR".encode()]))
            raw = raw[:at] + fragment + raw[at:]
    path = originals["folder"] / "fuzz.pkl"
    path.write_bytes(bytes(raw))
    _accepts_or_refuses(load_edm_pickle, path)
    assert not (originals["folder"] / SENTINEL).exists()


@FUZZ
@given(data=st.data())
def test_fuzzed_mixtures_are_loaded_or_refused(originals, data):
    from explorer.core.analytic import load_gmm_json

    spec = _mutate_json(mixture_spec(), data)
    text = json.dumps(spec)
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    path = originals["folder"] / "fuzz.json"
    path.write_text(text)
    _accepts_or_refuses(load_gmm_json, path)


@FUZZ
@given(data=st.data())
def test_fuzzed_trajectories_are_loaded_or_refused(originals, data):
    from safetensors.torch import load_file, save_file

    from explorer.core.trajectory import Trajectory

    meta = dict(originals["traj_meta"])
    tensors = load_file(str(originals["traj"]))
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(meta)))
        try:
            value = json.loads(meta[key])
        except ValueError:
            value = meta[key]
        meta[key] = json.dumps(_mutate_json(value, data))
    else:
        name = data.draw(st.sampled_from(sorted(tensors)))
        tensors[name] = data.draw(st.sampled_from([tensors[name][:1], tensors[name].flatten(),
                                                   tensors[name].to(torch.int64), tensors[name] * float("nan")]))
    path = originals["folder"] / "fuzz.safetensors"
    save_file(tensors, str(path), metadata=meta)
    _accepts_or_refuses(Trajectory.load, path)


def test_the_biggest_refusals_fit_a_small_memory_bound(corpus):
    """In a child limited to 1.5 GiB more address space than it needs after imports: giant claims are refused."""
    folder, _ = corpus
    names = ["ckpt_giant_image.safetensors", "pkl_huge_network.pkl", "pkl_repeated_storage.pkl", "pkl_billion_laughs.pkl",
             "noise_zip_bomb.npz", "noise_forged_shape.npy", "diff_huge_channels", "pkl_hash_collision.pkl"]
    script = textwrap.dedent(f"""
        import resource, sys
        from explorer.models.loader import load_denoiser
        from explorer.core.latents import load_noise
        import explorer.models.edm_import, explorer.models.diffusers_import
        with open("/proc/self/statm") as fh:
            now = int(fh.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (now + 1536 * 1024**2, resource.RLIM_INFINITY))
        for name in {names!r}:
            path = {str(folder)!r} + "/" + name
            try:
                load_noise(path, (2,)) if name.startswith("noise") else load_denoiser(path)
            except ValueError:
                continue
            sys.exit(name + " was not refused")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_failed_model_card_takes_its_converted_checkpoint_along(tmp_path, monkeypatch, capsys):
    from explorer.models import provenance

    (tmp_path / "net.pkl").write_bytes(edm_pickle_bytes(protocol=4))

    def full_disk(text, path):
        raise ValueError(f"Could not write {str(path)!r}: No space left on device.")

    monkeypatch.setattr(provenance, "write_text", full_disk)
    assert main(["convert", str(tmp_path / "net.pkl"), str(tmp_path / "net.safetensors")]) == 2
    assert "No space left" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pkl"]
