"""tms.llc.zoo.zoo_llc: the one estimate of lambda at zoo points (the reproduce stage, the
posterior's and the free energies' missing lambdas) equals the estimator run on those points
by hand, at the lab's protocol unless told otherwise."""
import json
import math

import pytest
import torch

from tms.llc.estimator import PROTOCOL, centre_keys, default_nbeta, estimate_llc
from tms.llc.zoo import zoo_llc
from tms.theory import zoo

SHORT = dict(n_chains=2, n_burnin=10, n_draws=40)


def test_rows_equal_the_estimator_on_the_named_points():
    labels = ["4+", "5", "4"]  # the order asked is the batch order
    est = zoo_llc(6, labels, n=600, seed=3, **SHORT)
    pts = [zoo.critical_point(6, lab) for lab in labels]
    ref = estimate_llc(torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts]), loss="population",
                       nbeta=600 / math.log(600), eps=1e-3, gamma=1.0, seed=3, **SHORT)
    assert [r.label for r in est.rows] == labels and est.nbeta == default_nbeta(600)
    for i, (r, q) in enumerate(zip(est.rows, pts)):
        assert r.estimate == float(ref.llc[i]) or (math.isnan(r.estimate) and math.isnan(float(ref.llc[i])))
        assert r.se == float(ref.llc_se[i]) or math.isnan(r.se)
        assert r.loss == q.loss and r.theory == q.llc and r.escaped == int(ref.n_escaped[i])
        assert r.trustworthy == (bool(ref.trustworthy[i]) and math.isfinite(float(ref.llc[i])))
        assert list(r.flags) == [n for n, on in ref.flags.named() if bool(on[i])]
    assert est.estimates() == {r.label: (r.estimate, r.se) for r in est.rows}
    assert est.usable == {r.label: r.estimate for r in est.rows if r.theory is None and r.trustworthy}
    assert "5" not in est.usable  # theory has lambda there: never "usable" as an estimate


def test_one_point_alone_has_the_numbers_of_its_place_in_a_batch():
    every = zoo_llc(5, seed=1, **SHORT)  # all points of c = 5, in the zoo's order
    assert [r.label for r in every.rows] == zoo.labels(5)
    i = zoo.labels(5).index("5")
    q = zoo.critical_point(5, "5")
    alone = estimate_llc(q.W, q.b, loss="population", nbeta=default_nbeta(1000), eps=1e-3, gamma=1.0,
                         keys=centre_keys(1, (len(every.rows),))[i], **SHORT)
    assert every.rows[i].estimate == alone.llc.item()


def test_defaults_are_the_protocol_and_the_record_is_json():
    est = zoo_llc(4, [], seed=2)  # nothing asked: nothing sampled
    assert est.rows == () and est.settings == PROTOCOL.replace(seed=2) and est.estimates() == {}
    rec = json.loads(json.dumps(zoo_llc(4, ["3"], **SHORT).as_record()))
    assert rec["settings"]["n_chains"] == 2 and rec["settings"]["eps"] == PROTOCOL.eps and rec["loss"] == "population"
    assert rec["nbeta"] == pytest.approx(1000 / math.log(1000)) and rec["rows"][0]["label"] == "3"
    assert set(rec["usable"]) <= {"3"}


def test_bad_settings_are_refused_before_sampling():
    with pytest.raises(ValueError, match="batch_size must be None"):
        zoo_llc(6, ["5"], batch_size=10)
    with pytest.raises(ValueError, match="n_draws must be >= 8"):
        zoo_llc(6, ["5"], n_draws=4)
    with pytest.raises(ValueError, match="unknown zoo label"):
        zoo_llc(6, ["9"], **SHORT)
