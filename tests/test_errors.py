"""User errors reach the console as one line, exit status 2: from DataLoader workers and for unset mandatory keys."""

import pytest
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from facelift.errors import InputError, _user_error_in, exit_on_user_error


class BadSample(Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        raise InputError("set/sample_00000/images/cam_031.png", "image not found (opencv_cameras.json frame 31 "
                                                                "names it)")


@pytest.mark.slow
def test_an_input_error_raised_in_a_dataloader_worker_is_its_own_line():
    with pytest.raises(RuntimeError) as caught:  # torch re-raises it from the worker as text
        next(iter(DataLoader(BadSample(), num_workers=1)))
    assert "Traceback" in str(caught.value)
    assert str(_user_error_in(caught.value)) == ("set/sample_00000/images/cam_031.png: image not found "
                                                 "(opencv_cameras.json frame 31 names it)")


@pytest.mark.slow
def test_a_worker_error_that_is_not_the_users_stays_a_traceback():
    class Broken(BadSample):
        def __getitem__(self, i):
            raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert _user_error_in(caught.value) is None


def test_an_unset_mandatory_key_is_one_line_with_the_usage(capsys):
    """The usage comes from the entry point module's docstring (here this module's: none, so the generic hint)."""
    @exit_on_user_error
    def main(cfg):
        return cfg.ckpt

    with pytest.raises(SystemExit) as done:
        main(OmegaConf.create({"ckpt": "???", "split": "val"}))
    assert done.value.code == 2
    assert capsys.readouterr().err == "error: ckpt=???: must be given on the command line (add KEY=VALUE)\n"


def test_dataloader_workers_are_at_most_the_cores_available(monkeypatch):
    import os

    from facelift.data.datamodule import usable_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a 2-core machine
    assert [usable_workers(n) for n in (0, 1, 2, 10)] == [0, 1, 2, 2]


def test_an_argparse_script_without_a_config_is_wrapped_too(capsys):
    @exit_on_user_error
    def main():
        raise InputError("raw", "source folder not found")

    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2 and capsys.readouterr().err == "error: raw: source folder not found\n"
