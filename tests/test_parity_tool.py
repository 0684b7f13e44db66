"""`python -m facelift.tools.parity`: passes on the reference GS-LRM fixture, fails when anything differs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from facelift.tools.parity import main

from conftest import REFERENCE, REPO

FIXTURE = REFERENCE / "gslrm_tiny_parity.pt"


@pytest.mark.slow
def test_reference_gslrm_fixture_passes(tmp_path):
    run = subprocess.run([sys.executable, "-m", "facelift.tools.parity", str(FIXTURE), "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS: 83/83 within 0.0001" in run.stdout  # 2 modes x 10 outputs, the PLY layout and its 62 fields
    assert (tmp_path / "gslrm_tiny_parity" / "gslrm_parity.ply").is_file()


def _altered_fixture(tmp_path, alter) -> str:
    fixture = torch.load(FIXTURE, weights_only=True)
    alter(fixture)
    path = tmp_path / "altered.pt"
    torch.save(fixture, path)
    shutil.copy(FIXTURE.with_suffix(".ply"), path.with_suffix(".ply"))  # the reference PLY beside it, same stem
    return str(path)


def test_a_changed_weight_fails(tmp_path, capsys):
    def alter(f):
        f["checkpoint"]["model"]["transformer_layers.1.mlp.mlp.2.weight"][0, 0] += 0.05

    assert main([_altered_fixture(tmp_path, alter), "--out", str(tmp_path / "out")]) == 1
    failing = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.endswith("FAIL")]
    assert {"inference.xyz", "train.xyz", "ply.x", "ply.f_dc_0"} <= set(failing)
    assert "inference.ray_d" not in failing  # rays do not depend on the weights


def test_a_changed_reference_output_fails_only_that_output(tmp_path, capsys):
    def alter(f):
        f["outputs"]["train"]["opacity_raw"][7] += 1e-3

    assert main([_altered_fixture(tmp_path, alter), "--out", str(tmp_path / "out")]) == 1
    failing = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.endswith("FAIL")]
    assert failing == ["train.opacity_raw"]


def test_unknown_fixture_kind_is_a_user_error(tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(SystemExit) as code:
        main([str(path)])
    assert code.value.code == 2 and "neither a GS-LRM fixture" in capsys.readouterr().err
