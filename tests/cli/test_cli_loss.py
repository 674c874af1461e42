import subprocess
import sys

from tms.cli.main import main


def test_loss_command_prints_exact_loss(capsys):
    # all outputs dead: L = 1/3 exactly (each dead output contributes 1/(3c))
    assert main(["loss", "--W", "[[0,0,0],[0,0,0]]", "--b", "[-1,-1,-1]"]) == 0
    out = capsys.readouterr().out
    assert "0.333333333333333" in out


def test_bad_argument_is_one_line_error_and_nonzero_exit():
    proc = subprocess.run(
        [sys.executable, "-m", "tms.cli.main", "loss", "--W", "[[1,0]]", "--b", "[1,2,3]"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "b must have shape" in proc.stderr
