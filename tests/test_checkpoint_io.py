"""Checkpoints survive a crash while they are written, and a damaged one is refused in one sentence naming it."""

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO
from test_gslrm_training import compose_config

from facelift.checkpoint_io import AtomicCheckpointIO
from facelift.errors import InputError
from facelift.run import train
from facelift.weights import load_checkpoint

# Writes last.ckpt once, then dies by SIGKILL halfway through writing it again: nothing of Python runs after that.
KILLED_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    import torch
    import facelift.checkpoint_io as cio

    path = sys.argv[1]
    io = cio.AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.zeros(100_000)}, path)

    def save_half_then_die(obj, f):
        f.write(b"PK\\x03\\x04" + bytes(200_000))
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    cio.torch.save = save_half_then_die
    io.save_checkpoint({"global_step": 2, "w": torch.ones(100_000)}, path)
""")


@pytest.mark.slow
def test_a_kill_while_last_ckpt_is_rewritten_leaves_the_previous_one_whole(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    run = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(last)], cwd=REPO, capture_output=True,
                         timeout=300, check=False)
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    ckpt = AtomicCheckpointIO().load_checkpoint(last)
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["w"], torch.zeros(100_000))
    (leftover,) = [p for p in last.parent.iterdir() if p != last]  # the half-written temporary file
    assert leftover.name.startswith(".last.") and leftover.suffix == ".tmp" and leftover.stat().st_size >= 200_000
    assert list(last.parent.glob("*.ckpt")) == [last]  # no checkpoint pattern picks the leftover


def test_a_save_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")

    def fail(obj, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 2}, tmp_path / "last.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert io.load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 1


def damaged(tmp_path, how: str):
    path = tmp_path / "good.ckpt"
    torch.save({"global_step": 3, "state_dict": {"w": torch.randn(50_000)}}, path)
    data = path.read_bytes()
    bad = tmp_path / f"{how}.ckpt"
    if how == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        bad.write_bytes(b"")
    elif how == "header":  # whole length, a zip entry's header zeroed (a bad disk or a bad copy)
        second = data.index(b"PK\x03\x04", 4)
        bad.write_bytes(data[:second] + bytes(30) + data[second + 30:])
    else:  # "pickle": whole length, the pickled structure zeroed
        bad.write_bytes(data[:60] + bytes(200) + data[260:])
    return bad


@pytest.mark.parametrize("how, problem", [("truncated", "checkpoint is truncated (cut short while it was written"),
                                          ("empty", "checkpoint file is empty"),
                                          ("header", "checkpoint is corrupt: torch.load cannot read it"),
                                          ("pickle", "checkpoint is corrupt or not a torch file")])
def test_a_damaged_checkpoint_is_one_sentence_naming_it(tmp_path, how, problem):
    bad = damaged(tmp_path, how)
    for load in (load_checkpoint, AtomicCheckpointIO().load_checkpoint):  # eval.py / infer.py, and resuming
        with pytest.raises(InputError) as err:
            load(bad)
        message = str(err.value)
        assert message.startswith(f"{bad}: {problem}") and "\n" not in message, message


@pytest.mark.slow
def test_eval_py_given_a_truncated_checkpoint_says_so_in_one_line(tmp_path):
    bad = damaged(tmp_path, "truncated")
    run = subprocess.run([sys.executable, "eval.py", f"ckpt={bad}", f"paths.log_dir={tmp_path}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: checkpoint is truncated")


def test_resuming_from_a_truncated_checkpoint_stops_before_any_work(tmp_path):
    bad = damaged(tmp_path, "truncated")
    cfg = compose_config("train", tmp_path, f"ckpt_path={bad}")
    with pytest.raises(InputError, match=r"truncated\.ckpt: checkpoint is truncated"):
        train(cfg)
    assert not (tmp_path / "data").exists()  # the synthetic set was not started
