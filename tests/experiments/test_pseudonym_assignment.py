"""With pseudonymous ids (issue 21) the assignment unit is the pseudonym: the router, the canary
reading the raw telemetry and an analysis of the lake (which holds pseudonyms) agree on every
user's variant; the router's request log names pseudonyms."""

from __future__ import annotations

import json
from datetime import datetime

from experiments.assignment import Allocation
from experiments.online import WeightsHistory
from experiments.router import ExperimentState, JsonLines, Router, Variant
from movierec_core.pseudonym import KeyRing

P = KeyRing.parse(f"k1={'s' * 24}").current
WEIGHTS = [("champion", 50.0), ("challenger", 50.0)]
T = datetime(2026, 12, 1, 12, 0)


def state(unit=None) -> ExperimentState:
    return ExperimentState("exp", [Variant(n, w, ["http://127.0.0.1:9"]) for n, w in WEIGHTS],
                           unit=unit)


def test_router_canary_and_lake_analysis_agree_on_every_users_variant() -> None:
    router_state = state(P.pid)
    history = WeightsHistory("exp", unit=P.pid)
    history.add(T, WEIGHTS)
    lake_view = Allocation.from_weights(WEIGHTS)  # the lake's user ids are pseudonyms already
    users = range(2000)
    assert all(router_state.assign(u) == history.variant_of(u, T)
               == lake_view.variant_of("exp", P.pid(u)) for u in users)
    # and it is the pseudonym that decides: by id alone, many users would land elsewhere
    by_id = sum(state().assign(u) != router_state.assign(u) for u in users)
    assert 800 < by_id < 1200


def test_the_request_log_names_pseudonyms(tmp_path) -> None:
    log = JsonLines(tmp_path / "requests.jsonl")
    router = Router(state(P.pid), timeout_s=0.05, request_log=log)
    assert router.recommend("42").status == 503  # no variant reachable: still logged
    assert router.assignment(42)["variant"] == router.state.assign(42)
    router.close()
    record = json.loads((tmp_path / "requests.jsonl").read_text().splitlines()[0])
    assert record["user_id"] == P.pid(42) != 42
