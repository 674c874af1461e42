"""Every command takes --device; a device this machine lacks is one line and exit 2."""
import pytest
import torch

from tms.cli.main import _commands, build_parser, main


def test_every_command_has_a_device_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = [m.NAME for m in _commands()]
    assert len(names) >= 8
    for name in names:
        p = sub.choices[name]
        dev = [a for a in p._actions if a.dest == "device"]
        assert dev and dev[0].default == "cpu", name


@pytest.mark.parametrize("device", ["nonsense", "cuda:7", "mps"])
def test_unavailable_device_is_a_one_line_error(device, capsys):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that many GPUs")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has mps")
    assert main(["loss", "--W", "[[1, 0], [0, 1]]", "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device" in err[0] and "Traceback" not in err[0]


def test_cpu_device_gives_the_same_numbers(capsys):
    assert main(["loss", "--W", "[[1, 0], [0, 1]]"]) == 0
    default = capsys.readouterr().out
    assert main(["loss", "--W", "[[1, 0], [0, 1]]", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == default and "population loss" in default
