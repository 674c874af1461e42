"""tms.core.io.claim_output: a result is never overwritten by one of another kind or other
settings (without force), an input is never its own output; records name their kind and
the torch threads in force when they were saved."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tms.core import io


def _save(path, kind, settings, key="settings"):
    with io.recording_kind(kind):
        io.save_result(path, {"x": np.arange(3)}, {key: settings})


def test_nothing_there_or_the_same_settings_may_be_written(tmp_path):
    io.claim_output(tmp_path / "r", "train", dict(lr=0.1))  # nothing there
    _save(tmp_path / "r", "train", dict(lr=0.1, n=5))
    io.claim_output(tmp_path / "r", "train", dict(lr=0.1))  # same on the given entries
    io.claim_output(tmp_path / "r.npz", "train", dict(lr=0.1, n=5))


def test_other_settings_need_force_and_the_message_names_the_change(tmp_path):
    _save(tmp_path / "r", "train", dict(lr=0.1, n=5))
    with pytest.raises(ValueError, match=r"out: .* holds a `tms train` result with other settings \(lr: 0.1 -> 0.2\).*"
                                         r"--force"):
        io.claim_output(tmp_path / "r", "train", dict(lr=0.2, n=5))
    io.claim_output(tmp_path / "r", "train", dict(lr=0.2, n=5), force=True)
    problem = io.output_problem(tmp_path / "r", "train", dict(lr=0.2))
    assert problem is not None and problem.overridable


def test_another_kind_or_an_input_is_refused_even_with_force(tmp_path):
    _save(tmp_path / "r", "posterior", dict(c=3))
    for force in (False, True):
        with pytest.raises(ValueError, match="holds a `tms posterior` result, not a `tms train` one"):
            io.claim_output(tmp_path / "r", "train", dict(c=3), force=force)
        with pytest.raises(ValueError, match="is also this command's input"):
            io.claim_output(tmp_path / "r", "posterior", dict(c=3), inputs=(str(tmp_path / "r.npz"),), force=force)


def test_a_record_without_kind_is_judged_by_its_settings(tmp_path):
    io.save_result(tmp_path / "old", {}, {"settings": dict(lr=0.1)})  # made outside recording_kind
    assert "kind" not in io.load_result(tmp_path / "old")[1]["provenance"]
    io.claim_output(tmp_path / "old", "train", dict(lr=0.1))
    with pytest.raises(ValueError, match=r"kind not recorded.*lr: 0.1 -> 0.3"):
        io.claim_output(tmp_path / "old", "train", dict(lr=0.3))


def test_nested_keys_and_a_damaged_pair(tmp_path):
    _save(tmp_path / "p", "train", {"settings": dict(lr=0.1)}, key="train")
    io.claim_output(tmp_path / "p", "train", dict(lr=0.1), key=("train", "settings"))
    with pytest.raises(ValueError, match="lr"):
        io.claim_output(tmp_path / "p", "train", dict(lr=0.5), key=("train", "settings"))
    (tmp_path / "p.json").write_text("{ torn")  # a damaged pair is recomputed anyway: no claim on it
    assert io.output_problem(tmp_path / "p", "train", dict(lr=0.5)) is None


def test_kind_does_not_change_what_reuse_compares(tmp_path):
    _save(tmp_path / "r", "llc", dict(a=1))
    assert io.reuse_problem(tmp_path / "r", dict(a=1)) is None  # provenance (and its kind) ignored


def test_provenance_records_the_threads_in_force(tmp_path):
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    try:
        torch.set_num_threads(want)
        io.save_result(tmp_path / "t", {}, {})
    finally:
        torch.set_num_threads(before)
    assert io.load_result(tmp_path / "t")[1]["provenance"]["torch_threads"] == want


def test_a_record_without_kind_and_other_fields_is_another_kind(tmp_path):
    io.save_result(tmp_path / "old", {}, {"settings": dict(c=3, n_temps=4)})  # e.g. an old posterior summary
    for force in (False, True):
        with pytest.raises(ValueError, match="another kind .* lack lr"):
            io.claim_output(tmp_path / "old", "train", dict(c=3, lr=0.1), force=force)
