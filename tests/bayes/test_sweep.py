"""The one sweep engine (tms.bayes.sweep): a run interrupted at any step, by an interrupt (the
snapshot saved then) or by a kill (only the interval checkpoints on disk), resumes to the
uninterrupted run's numbers to the last bit, for the posterior phase sweep and the
free-energy sweep; checkpoints round-trip exactly, a damaged one is said and recomputed, one of
other settings is refused, and none is left when the sweep ends."""
import numpy as np
import pytest
import torch

from tms.bayes import checkpoint, posterior, sweep
from tms.bayes.free_energy import ladders
from tms.core import io
from tms.samplers import rounds, tempering

# blocks of 16 rounds and 24 plain draws span several steps of sweep.STEP = 10 rounds
# and the precision stop ends the n at rounds 16, 32 and 64: 17 steps, points finishing apart
KW = dict(predict=False, seeds=2, n_chains=3, replicas=2, n_temps=4, n_warmup=20, n_draws=64, max_steps=8,
          plain_draws=24, block=16, min_draws=16, target_se=0.05)
FE = dict(seeds=2, replicas=2, n_temps=3, n_warmup=12, n_draws=24, max_steps=6)
NS = [40, 100, 1100]


class Killed(BaseException):
    """A kill: no handler runs (unlike KeyboardInterrupt, which saves the snapshot)."""


def _stop_after(monkeypatch, steps: int, exc) -> list:
    """Make sweep._advance raise `exc` at its call number `steps` (counted in the list)."""
    calls, advance = [], sweep._advance

    def counted(*a, **k):
        calls.append(1)
        if len(calls) == steps:
            raise exc()
        return advance(*a, **k)

    monkeypatch.setattr(sweep, "_advance", counted)
    return calls


def _get(point, key: str):
    return point[key] if isinstance(point, dict) else getattr(point, key)


def _same_points(a: list, b: list, keys) -> None:
    for pa, pb in zip(a, b):
        assert _get(pa, "n") == _get(pb, "n")
        for k in keys:
            va, vb = _get(pa, k), _get(pb, k)
            if isinstance(va, (dict, list)) or va is None:
                assert io.jsonable(va) == io.jsonable(vb), k
            else:
                np.testing.assert_array_equal(va, vb, err_msg=f"n={_get(pa, 'n')} {k}")


POSTERIOR_KEYS = ("phases", "mass_seed", "mass_se_seed", "occupancy_seed", "occupancy_se_seed", "round_trips_seed",
                  "diag", "layout")


@pytest.fixture(scope="module")
def posterior_ref(tmp_path_factory):
    calls = []
    advance = sweep._advance
    sweep._advance = lambda *a, **k: calls.append(1) or advance(*a, **k)
    try:
        res = posterior.phase_sweep(4, NS, out_dir=tmp_path_factory.mktemp("ref"), **KW)
    finally:
        sweep._advance = advance
    return res, len(calls)


@pytest.mark.parametrize("how, where", [("interrupt", w) for w in (0.06, 0.18, 0.3, 0.42, 0.54, 0.66, 0.78, 0.9)]
                         + [("kill", w) for w in (0.12, 0.36, 0.6, 0.84)])
def test_a_stopped_posterior_sweep_resumes_to_the_same_numbers(posterior_ref, tmp_path, monkeypatch, where, how):
    """Stopped at a fraction `where` of its steps (plain chains' warm-up and sampling, the
    ladders' warm-up, mid-block, after points finished), by an interrupt or a kill with a
    checkpoint every step (save_every=0): the rerun ends with the uninterrupted numbers."""
    ref, steps = posterior_ref
    stop = max(2, int(where * steps))
    calls = _stop_after(monkeypatch, stop, KeyboardInterrupt if how == "interrupt" else Killed)
    with pytest.raises(KeyboardInterrupt if how == "interrupt" else Killed):
        posterior.phase_sweep(4, NS, out_dir=tmp_path, save_every=0 if how == "kill" else 1e9, **KW)
    assert list(tmp_path.glob("posterior_c4_partial_n*.json")), "no checkpoint after the stop"
    monkeypatch.undo()
    calls = _stop_after(monkeypatch, 10**9, Killed)
    res = posterior.phase_sweep(4, NS, out_dir=tmp_path, **KW)
    assert len(calls) <= steps - stop + 2  # resumed from the checkpoint, not from the start
    _same_points(ref.points, res.points, POSTERIOR_KEYS)
    for a, b in zip(ref.points, res.points):
        for s in range(KW["seeds"]):
            for k in ("theta", "loss", "energy", "phase"):
                np.testing.assert_array_equal(a.draws[s][k], b.draws[s][k])
    assert not list(tmp_path.glob("*_partial*")) and not list(tmp_path.glob(".*"))


def test_a_stopped_free_energy_sweep_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    ref = ladders.sweep_seeds(6, [200, 500], seed=3, theory=False, **FE)
    _stop_after(monkeypatch, 5, KeyboardInterrupt)  # start, 2 warm-up steps, then mid-block (24 rounds)
    with pytest.raises(KeyboardInterrupt):
        ladders.sweep_seeds(6, [200, 500], seed=3, theory=False, out_dir=tmp_path, **FE)
    monkeypatch.undo()
    rec = io.load_json(tmp_path / "fe_c6_partial_n200.json")
    assert rec["phase"] == 0 and rec["settings"]["ns"] == [200, 500] and rec["rounds"] == 0
    assert checkpoint.unflatten(rec["state"], io.load_result(tmp_path / "fe_c6_partial_n200")[0])[7] == 10
    res = ladders.sweep_seeds(6, [200, 500], seed=3, theory=False, out_dir=tmp_path, **FE)
    _same_points(ref, res, ("phases_zoo", "phases_hull", "frac_zoo", "frac_hull", "round_trips", "betas",
                            "swap_rate", "accept", "divergences"))
    assert not list(tmp_path.glob("*_partial*"))


def test_checkpoint_round_trip_is_exact():
    theta = torch.randn(2, 3, 5, dtype=torch.float64)
    keys = torch.arange(6).reshape(2, 3) * 7919
    state = tempering.SamplerState(rounds.Chains(theta, theta.sum(-1), theta.float()), keys, None,
                                   torch.rand(2, 3), torch.ones(1, 2, 3, dtype=torch.long), None, None,
                                   torch.zeros(2, 3, dtype=torch.long), 7)
    tree = dict(state=state, labels=np.array([["5", "6+"]]), x=np.float64(0.1) + 0.2, rows=[1, 2], none=None,
                recs={3: dict(flag=True, name="a", value=1 / 3, parts=(np.arange(3), [np.zeros((0, 2))]))})
    arrays, layout = checkpoint.flatten(tree)
    back = checkpoint.unflatten(io.jsonable(layout), arrays)
    assert back["state"].rounds == 7 and back["state"].betas is None and back["recs"][3]["value"] == 1 / 3
    for a, b in zip(state.chains, back["state"].chains):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert torch.equal(back["state"].keys, keys) and type(back["x"]) is np.float64 and back["x"] == tree["x"]
    assert back["labels"].tolist() == [["5", "6+"]] and back["rows"] == [1, 2] and back["none"] is None
    assert isinstance(back["recs"][3]["parts"], tuple) and back["recs"][3]["parts"][1][0].shape == (0, 2)
    with pytest.raises(TypeError, match="cannot save"):
        checkpoint.flatten(dict(f=len))


def test_damaged_checkpoint_is_said_and_recomputed_and_other_settings_refused(posterior_ref, tmp_path, monkeypatch,
                                                                              capsys):
    ref, steps = posterior_ref
    _stop_after(monkeypatch, steps // 2, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        posterior.phase_sweep(4, NS, out_dir=tmp_path, **KW)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="other settings"):
        posterior.phase_sweep(4, NS, out_dir=tmp_path, **dict(KW, n_draws=32))
    ckpt = next(tmp_path.glob("posterior_c4_partial_n*.npz"))
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(raw))
    capsys.readouterr()
    res = posterior.phase_sweep(4, NS, out_dir=tmp_path, **KW)
    assert "recomputing its chunk from the start" in capsys.readouterr().err
    _same_points(ref.points, res.points, POSTERIOR_KEYS[:-1])  # the layout: the rest of the grid
    assert not list(tmp_path.glob("*_partial*"))
