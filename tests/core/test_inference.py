"""ArviZ round trip: saved posterior draws and LLC traces load with arviz.from_netcdf, and
ArviZ's own diagnostics on them equal the ones the results report; the `tms` command does not
import ArviZ (nor print its warnings) until it writes InferenceData."""
import json
import math
import subprocess
import sys

import arviz as az
import numpy as np
import pytest
import torch

from tms.core import inference
from tms.bayes import posterior, posterior_point
from tms.theory import zoo
from tms.llc.estimator import default_nbeta, estimate_llc

KW = dict(predict=False, n_chains=4, replicas=3, n_temps=4, n_warmup=20, n_draws=40, max_steps=8, plain_draws=12,
          block=8, min_draws=40, target_se=0.5)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("post")
    mp = pytest.MonkeyPatch()
    mp.setitem(posterior.MAX_KEPT, "ladder", 12)  # 40 rounds thinned to every 4th: 10 per ladder
    try:
        res = posterior.phase_sweep(4, [100, 200], seeds=2, out_dir=out, **KW)
    finally:
        mp.undo()
    return out, res


def test_saved_draws_load_with_named_dims_and_settings(swept):
    out, res = swept
    pt = res.points[1]
    idata = az.from_netcdf(out / "posterior_c4_n200_draws_s1.nc")
    W, b = idata.posterior["W"], idata.posterior["b"]
    assert W.dims == ("chain", "draw", "W_row", "W_col") and W.shape == (3, 10, 2, 4)
    assert b.dims == ("chain", "draw", "feature") and idata.sample_stats["phase"].dims == ("chain", "draw")
    attrs = idata.posterior.attrs
    assert json.loads(attrs["settings"]) == json.loads(json.dumps(res.settings))
    assert attrs["n"] == 200 and attrs["dataset"] == 1 and attrs["thin_stride"] == 4 and attrs["max_kept"] == 12
    d = pt.draws[1]
    np.testing.assert_array_equal(W.values.reshape(3, 10, -1), d["theta"][..., :8])
    np.testing.assert_array_equal(b.values, d["theta"][..., 8:])
    labels = np.asarray(json.loads(attrs["phase_labels"]))[idata.sample_stats["phase"].values]
    assert set(labels.ravel()) <= set(pt.phases)
    # independent check of the saved loss and energy: L_n of the saved W, b on the data set
    from tms.theory.data import sample_inputs
    from tms.theory.loss import empirical_loss
    X = sample_inputs(200, 4, posterior.data_seed(0, 200, 1))
    Wt, bt = torch.as_tensor(W.values, dtype=torch.float64), torch.as_tensor(b.values, dtype=torch.float64)
    L = empirical_loss(Wt, bt, X).numpy()
    np.testing.assert_allclose(idata.posterior["loss"].values, L, rtol=1e-10)
    prior = 0.5 * (d["theta"].astype(np.float64) ** 2).sum(-1)
    np.testing.assert_allclose(idata.sample_stats["energy"].values, 200 * L + prior, rtol=1e-10)


def test_arviz_diagnostics_on_saved_draws_equal_reported(swept):
    out, res = swept
    compared = 0
    for pt in res.points:
        rep = pt.diag["draws"]
        for s in range(2):
            idata = az.from_netcdf(out / f"posterior_c4_n{pt.n}_draws_s{s}.nc")
            for v, group in (("loss", idata.posterior), ("energy", idata.sample_stats)):
                ds = group[[v]]  # an xarray Dataset, as ArviZ takes it
                ref = dict(rhat=az.rhat(ds)[v].item(), ess_bulk=az.ess(ds, method="bulk")[v].item(),
                           ess_tail=az.ess(ds, method="tail")[v].item())
                for q, val in ref.items():
                    got = rep[f"{q}_{v}"][s]
                    assert (got is None and not math.isfinite(val)) or got == pytest.approx(val, rel=1e-10), (q, v)
                    compared += got is not None
    assert compared >= 20  # of 24 (2 points x 2 data sets x 2 variables x 3 diagnostics)


def test_loaded_point_draws_round_trip(swept):
    out, res = swept
    again = posterior.phase_sweep(4, [100, 200], seeds=2, out_dir=out, **KW)  # all from disk
    for a, b in zip(res.points, again.points):
        for da, db in zip(a.draws, b.draws):
            for k in ("theta", "loss", "energy", "phase"):
                np.testing.assert_array_equal(da[k], db[k])
            assert da["phase_labels"] == db["phase_labels"] and da["thin_stride"] == db["thin_stride"]


def test_draws_read_with_h5py_equal_the_arviz_reading(swept, monkeypatch):
    # load_point_draws reads the netCDF-4 (HDF5) file raw with h5py; ArviZ (xarray) is the fallback
    out, _ = swept
    path = out / "posterior_c4_n200_draws_s1.nc"
    fast = inference.load_point_draws(path)

    def no_h5py(_):
        raise ImportError("h5py")

    monkeypatch.setattr(inference, "_read_hdf5", no_h5py)
    slow = inference.load_point_draws(path)
    assert fast.keys() == slow.keys()
    for k in ("theta", "loss", "energy", "phase"):
        assert fast[k].dtype == slow[k].dtype
        np.testing.assert_array_equal(fast[k], slow[k])
    for k in ("phase_labels", "thin_stride", "max_kept"):
        assert fast[k] == slow[k] and type(fast[k]) is type(slow[k])


def test_both_netcdf_engines_write_files_read_back_alike(swept, tmp_path, monkeypatch):
    # save_netcdf writes with libnetcdf where netCDF4 loads (the saved files above), else h5netcdf:
    # the same draws come back from either file, raw (h5py) and through ArviZ
    out, _ = swept
    record = inference.load_point_draws(out / "posterior_c4_n200_draws_s1.nc")
    idata = inference.point_inference_data(record, r=2, c=4, n=200, dataset=1, settings={"x": 1})
    assert inference.netcdf_engine() == "netcdf4"
    inference.save_netcdf(idata, tmp_path / "a.nc")
    monkeypatch.setattr(inference, "netcdf_engine", lambda: "h5netcdf")
    inference.save_netcdf(idata, tmp_path / "b.nc")
    for path in (tmp_path / "a.nc", tmp_path / "b.nc"):
        got = inference.load_point_draws(path)
        via_arviz = az.from_netcdf(path)
        for k in ("theta", "loss", "energy", "phase"):
            assert got[k].dtype == record[k].dtype
            np.testing.assert_array_equal(got[k], record[k])
        np.testing.assert_array_equal(via_arviz.posterior["loss"].values, record["loss"])
        assert json.loads(via_arviz.posterior.attrs["settings"]) == {"x": 1}


def test_llc_trace_inference_data_round_trip(tmp_path):
    pts = {q.label: q for q in zoo.critical_points(5)}
    W, b = torch.stack([pts["5"].W, pts["4"].W]), torch.stack([pts["5"].b, pts["4"].b])
    res = estimate_llc(W, b, None, nbeta=default_nbeta(1000), eps=1e-3, gamma=1.0, n_chains=3, n_burnin=20,
                       n_draws=40, loss="population", seed=1)
    path = inference.save_netcdf(inference.llc_inference_data(res), tmp_path / "llc.nc")
    idata = az.from_netcdf(path)
    loss = idata.posterior["loss"]
    assert loss.dims[:2] == ("chain", "draw") and loss.shape == (3, 40, 2)
    trace = res.loss_trace.detach().numpy()  # (2 centres, 3 chains, 60 steps)
    np.testing.assert_allclose(loss.values, np.moveaxis(trace[..., 20:], (0,), (2,)), rtol=1e-12)
    # the per-draw llc averages to the reported per-chain estimates
    np.testing.assert_allclose(idata.posterior["llc"].mean("draw").values.T, res.llc_chains.numpy(), rtol=1e-10)
    assert json.loads(idata.posterior.attrs["settings"])["n_draws"] == 40
    # thinned: at most max_draws per chain
    thin = inference.llc_inference_data(res, max_draws=8)
    assert thin.posterior["loss"].shape == (3, 8, 2) and thin.posterior.attrs["thin_stride"] == 5


def test_draw_diagnostics_flag_a_stuck_ladder_and_one_at_4x_the_scale():
    # the stuck-chain cases in the posterior's own report (diag['draws']): loss of 4 ladders x 1000 draws
    rng = np.random.default_rng(1)
    stuck, wide = rng.standard_normal((4, 1000)), rng.standard_normal((4, 1000))
    stuck[0] *= 0.01
    wide[0] *= 4.0
    iid = rng.standard_normal((4, 1000))
    recs = [dict(kept=dict(theta=np.zeros((4, 1000, 12)), labels=np.full((4, 1000), "a"), loss=x, energy=iid,
                           thin_stride=1, max_kept=1000)) for x in (stuck, wide, iid)]
    _, diag = posterior_point._draw_records(recs, ["a"])
    assert "rhat_loss" in diag["flags"][0] and "ess_tail_loss" in diag["flags"][1]
    assert diag["flags"][2] == [] and diag["rhat_loss"][0] > 1.4 and diag["ess_tail_loss"][1] < 60


def test_tms_starts_without_arviz_and_without_warnings():
    code = "import sys, tms.cli.main as m; m.build_parser(); print('arviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "tms", "loss", "--W", "[[1,0],[0,1]]"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "population loss L" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr

