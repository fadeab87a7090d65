from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import spearmanr

from movierec_core.events import EventKind, ParserSettings, Rating, Rejection, parse
from movierec_core.invalid import EXPECTED_REASONS, InvalidKind
from simulator.faults import FaultInjector
from simulator.ledger import Ledger
from simulator.stream import generate_lines, iter_batches


@pytest.fixture(scope="module")
def faulty(small_world):
    return generate_lines(small_world, 60_000, seed=3, invalid_rate=0.02, duplicate_rate=0.02,
                          recommender="oracle")


def test_given_same_seed_then_identical_stream(tiny_world):
    a, ledger_a = generate_lines(tiny_world, 5_000, seed=9, invalid_rate=0.01, duplicate_rate=0.01)
    b, ledger_b = generate_lines(tiny_world, 5_000, seed=9, invalid_rate=0.01, duplicate_rate=0.01)
    c, _ = generate_lines(tiny_world, 5_000, seed=10, invalid_rate=0.01, duplicate_rate=0.01)
    assert a == b
    assert ledger_a.to_dict() == ledger_b.to_dict()
    assert a != c


def test_ledger_reconciles_with_what_was_produced(faulty):
    lines, ledger = faulty
    assert len(lines) == ledger.lines_total >= 60_000
    parsed = [parse(line) for line in lines]
    rejected = [line for line, e in zip(lines, parsed, strict=True) if isinstance(e, Rejection)]
    valid = [line for line, e in zip(lines, parsed, strict=True) if not isinstance(e, Rejection)]
    assert len(rejected) == ledger.invalid_total > 0
    assert len(set(rejected)) == len(rejected) - ledger.invalid_repeats  # distinct too
    assert ledger.invalid_repeats == 0
    distinct = set(valid)
    assert len(distinct) == ledger.valid_total  # distinct events never share bytes
    assert len(valid) - len(distinct) == ledger.duplicates > 0
    kinds = Counter(e.kind.value for e in {line: e for line, e in zip(lines, parsed, strict=True)
                                           if not isinstance(e, Rejection)}.values())
    assert dict(kinds) == dict(ledger.valid)
    assert set(ledger.invalid) == {k.value for k in InvalidKind}


def test_line_kind_mix_is_within_tolerance(faulty):
    _, ledger = faulty
    share = {k: v / ledger.valid_total for k, v in ledger.valid.items()}
    assert 0.96 <= share[EventKind.WATCH.value] <= 0.995
    assert 0.003 <= share[EventKind.RECOMMEND.value] <= 0.03
    assert share[EventKind.RATE.value] > 0.001
    assert share[EventKind.ACCOUNT.value] > 0
    assert 0.01 <= ledger.invalid_total / ledger.valid_total <= 0.03
    assert 0.01 <= ledger.duplicates / ledger.valid_total <= 0.03


@pytest.mark.parametrize("kind", list(InvalidKind))
def test_every_injected_invalid_line_is_rejected_with_an_expected_reason(kind):
    injector = FaultInjector(invalid_rate=1.0, kinds=[kind.value], seed=4,
                             movie_ids=["heat+1995", "amélie+2001", "crouching+tiger++x+2000"])
    ledger = Ledger()
    valid = [b"2025-03-02T14:07:33,1,GET /data/m/heat+1995/%d.mpg" % i for i in range(40)]
    out = injector.apply(valid, ledger)
    injected = [line for line in out if line not in set(valid)]
    assert len(injected) == ledger.invalid[kind.value] > 20
    for line in injected:
        result = parse(line)
        assert isinstance(result, Rejection), line[:100]
        assert result.reason in EXPECTED_REASONS[kind], (line[:100], result.reason)


def test_ratings_correlate_with_true_affinity(small_world):
    batches, sim = iter_batches(small_world, seed=5, recommender="random")
    lines = [line for _, batch in zip(range(300), batches, strict=False) for line in batch]
    world = sim.world  # the simulation's own copy, grown by sign-ups
    ratings = [e for e in map(parse, lines) if isinstance(e, Rating)]
    assert len(ratings) > 200
    users = np.array([r.user_id for r in ratings])
    movies = np.array([world.index_of[r.movie_id] for r in ratings])
    affinity = world.affinity(users, movies)
    rho = spearmanr([r.stars for r in ratings], affinity).statistic
    assert rho > 0.5
    assert {r.stars for r in ratings} <= set(range(1, 6))


def test_ten_star_scale_is_configurable(tiny_world):
    from simulator.stream import simulation_config

    cfg = simulation_config(seed=2, **{"behaviour.rating_scale_max": 10, "behaviour.rating_prob": 1.0})
    lines, _ = generate_lines(tiny_world, 20_000, cfg=cfg)
    ten = ParserSettings(rating_max=10)
    stars = {e.stars for e in (parse(line, ten) for line in lines) if isinstance(e, Rating)}
    assert max(stars) > 5 and stars <= set(range(1, 11))


def test_huge_lines_are_cut_but_still_too_long():
    injector = FaultInjector(invalid_rate=1.0, kinds=["huge_line"], huge_line_bytes=100_000, seed=1)
    out = injector.apply([b"2025-03-02T14:07:33,1,GET /create_account"] * 1, Ledger())
    huge = [line for line in out if len(line) > 65536]
    assert huge and all(len(line) <= 100_000 for line in huge)
