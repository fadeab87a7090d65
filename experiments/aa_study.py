"""A/A and A/B studies of the experiment analysis: false positives, coverage and power when the
analysis is repeated after every window (peeking), as the canary controller does.

Each simulated experiment has ``users`` users split 50/50 (as the router's hash does), each
with ``1 + Poisson(mean_requests - 1)`` requests spread uniformly over ``looks`` windows and a
watch propensity of its own, ``Beta(2, 3)`` (so a user's requests are correlated: the unit of
randomisation is the user, not the request). Treatment adds ``lift`` to every treated user's
propensity (0 in an A/A study). After every window the cumulative data are analysed by:

* ``per_request_fixed``: the old analysis, a two-proportion z interval on requests as if they
  were independent, at 95 %, taken at face value at every look;
* ``user_sequential``: users as the unit (delta method) and the mixture SPRT's always-valid
  confidence sequence at 95 % (``experiments.stats.user_level_diff``), what the canary uses;
* ``user_sequential_cuped``: the same with CUPED, each user's watch-through in a pre-period
  (as many requests again, before the experiment, same propensity) as the covariate.

An experiment is a false positive when any look's interval excludes 0 in an A/A study;
coverage is the share of experiments whose interval contains the true difference at every
look. ``python -m experiments aa-study`` prints the tables; ``bench/aa_study.py`` writes them
to ``bench/results/aa_study.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.stats import two_proportion_test, user_level_diff

METHODS = ("per_request_fixed", "user_sequential", "user_sequential_cuped")


@dataclass(frozen=True)
class StudySettings:
    experiments: int = 500
    users: int = 2000
    mean_requests: float = 4.0
    looks: int = 6
    lift: float = 0.0
    beta: tuple[float, float] = (2.0, 3.0)
    confidence: float = 0.95
    tau: float = 0.05
    seed: int = 20261201
    # requests per user drawn from these counts (with replacement) instead of 1 + Poisson:
    # the simulator's own distribution (:func:`calibrate_from_simulator`)
    request_counts: tuple[int, ...] = ()

    def requests_per_user(self, rng: np.random.Generator) -> np.ndarray:
        if self.request_counts:
            return rng.choice(np.asarray(self.request_counts, np.int64), self.users)
        return 1 + rng.poisson(self.mean_requests - 1, self.users)


@dataclass(frozen=True)
class Calibration:
    """Per-user request counts and watch-through of a simulated period, and the Beta
    distribution of propensities that explains the watch-through's spread across users."""

    users: int
    requests: int
    counts: tuple[int, ...]
    watch_through: float
    beta: tuple[float, float]
    minutes: int
    seed: int

    def settings(self, **overrides) -> StudySettings:
        return StudySettings(**{"users": self.users, "beta": self.beta,
                                "mean_requests": self.requests / self.users,
                                "request_counts": self.counts, **overrides})


def beta_from_users(watched: np.ndarray, requests: np.ndarray) -> tuple[float, float]:
    """Method of moments for ``p_u ~ Beta(a, b)`` from per-user ``watched_u ~ Binomial(n_u,
    p_u)``: the spread of the per-user rates minus the binomial noise of ``n_u`` draws,
    ``var(p) = (var(w/n) - m (1 - m) E[1/n]) / (1 - E[1/n])``."""
    rates = watched / requests
    m = float(watched.sum() / requests.sum())
    inv = float(np.mean(1.0 / requests))
    var_p = (float(rates.var()) - m * (1 - m) * inv) / (1 - inv) if inv < 1 else 0.0
    var_p = min(max(var_p, 1e-6), m * (1 - m) * 0.999)  # a Beta needs 0 < var < m (1 - m)
    common = m * (1 - m) / var_p - 1
    return float(m * common), float((1 - m) * common)


def calibrate_from_simulator(n_users: int = 5000, minutes: int = 120, seed: int = 7,
                             join_window_s: float = 7200.0, min_watch_minutes: int = 15,
                             recommender: str = "popularity") -> Calibration:
    """Run the simulator for ``minutes`` simulated minutes (no Kafka: its lines in memory),
    parse them with the platform's parser, join watches to recommendations as the canary does
    and take each user's requests and watch-throughs (requests whose join window ended inside
    the period)."""
    from datetime import timedelta

    from experiments.online import per_user_watch_counts, requests_and_watches
    from simulator.stream import iter_batches
    from simulator.world import World, WorldConfig

    world = World.build(WorldConfig(seed=seed, n_users=n_users))
    batches, _sim = iter_batches(world, seed=seed, recommender=recommender)
    lines = [line for _, batch in zip(range(minutes), batches, strict=False) for line in batch]
    requests, watches = requests_and_watches(lines)
    if not requests:
        raise ValueError("the simulated period has no recommendation requests")
    end = max(r.time for r in requests) - timedelta(seconds=join_window_s)
    matured = [r for r in requests if r.time <= end] or requests
    per_user = per_user_watch_counts(matured, watches, join_window_s, min_watch_minutes)
    w = np.array([c[0] for c in per_user.values()], np.float64)
    n = np.array([c[1] for c in per_user.values()], np.float64)
    return Calibration(len(per_user), int(n.sum()), tuple(int(x) for x in n),
                       float(w.sum() / n.sum()), beta_from_users(w, n), minutes, seed)


def one_experiment(rng: np.random.Generator, s: StudySettings) -> dict[str, dict[str, bool]]:
    n_req = s.requests_per_user(rng)
    treated = rng.random(s.users) < 0.5
    base = rng.beta(*s.beta, s.users)
    # the pre-period (before the experiment, everyone on the champion): CUPED's covariate
    n_pre = s.requests_per_user(rng)
    x = rng.binomial(n_pre, base) / n_pre
    p = np.clip(base + s.lift * treated, 0.0, 1.0)
    user = np.repeat(np.arange(s.users), n_req)
    look = rng.integers(0, s.looks, user.size)
    success = rng.random(user.size) < p[user]
    # per look, per user: requests and successes (cumulative over looks)
    n = np.zeros((s.looks, s.users), np.int64)
    k = np.zeros((s.looks, s.users), np.int64)
    np.add.at(n, (look, user), 1)
    np.add.at(k, (look, user), success.astype(np.int64))
    n, k = n.cumsum(axis=0), k.cumsum(axis=0)
    truth = true_difference(s)
    out = {m: {"rejected": False, "covered": True, "reduction": 0.0} for m in METHODS}
    for t in range(s.looks):
        seen = n[t] > 0
        c, tr = seen & ~treated, seen & treated
        if not c.any() or not tr.any():
            continue
        fixed = two_proportion_test(int(k[t][c].sum()), int(n[t][c].sum()),
                                    int(k[t][tr].sum()), int(n[t][tr].sum()), s.confidence)
        seq = user_level_diff((k[t][c], n[t][c]), (k[t][tr], n[t][tr]), s.confidence,
                              sequential=True, tau=s.tau)
        cuped = user_level_diff((k[t][c], n[t][c]), (k[t][tr], n[t][tr]), s.confidence,
                                sequential=True, tau=s.tau, covariates=(x[c], x[tr]))
        for name, r in (("per_request_fixed", fixed), ("user_sequential", seq),
                        ("user_sequential_cuped", cuped)):
            out[name]["rejected"] |= r.ci_low > 0 or r.ci_high < 0
            out[name]["covered"] &= r.ci_low <= truth <= r.ci_high
        out["user_sequential_cuped"]["reduction"] = cuped.variance_reduction  # the last look
    return out


def true_difference(s: StudySettings, draws: int = 400_000) -> float:
    """The treatment - control difference of the ratio metric the design implies (0 in an A/A
    study; with a lift, what clipping at 1 leaves of it, by a large fixed-seed draw)."""
    if s.lift == 0:
        return 0.0
    rng = np.random.default_rng(7)
    p = rng.beta(*s.beta, draws)
    # requests per user are independent of the propensity: the ratio is the mean propensity
    return float(np.clip(p + s.lift, 0, 1).mean() - p.mean())


def run_study(s: StudySettings) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(s.seed)
    counts = {m: {"rejected": 0, "covered": 0, "reduction": 0.0} for m in METHODS}
    for _ in range(s.experiments):
        for m, r in one_experiment(rng, s).items():
            counts[m]["rejected"] += int(r["rejected"])
            counts[m]["covered"] += int(r["covered"])
            counts[m]["reduction"] += r["reduction"]
    out = {m: {"rejection_rate": c["rejected"] / s.experiments,
               "coverage": c["covered"] / s.experiments} for m, c in counts.items()}
    # CUPED: the mean variance reduction at the last look; the same share of users is saved
    # for the same interval width (variance ~ 1 / users)
    out["user_sequential_cuped"]["variance_reduction"] = (
        counts["user_sequential_cuped"]["reduction"] / s.experiments)
    return out


def power_table(users_grid: tuple[int, ...] = (500, 1000, 2000, 4000, 8000),
                lifts: tuple[float, ...] = (0.02, 0.05, 0.1), experiments: int = 200,
                base: StudySettings = StudySettings()) -> list[dict[str, float]]:
    """A/B studies with known lifts: the share of experiments in which the sequential
    analysis found the (positive) difference at some look."""
    rows = []
    for lift in lifts:
        for users in users_grid:
            s = StudySettings(**{**base.__dict__, "users": users, "lift": lift,
                                 "experiments": experiments, "seed": base.seed + users})
            res = run_study(s)
            rows.append({"lift": lift, "users": users,
                         "power_user_sequential": res["user_sequential"]["rejection_rate"],
                         "power_user_sequential_cuped":
                             res["user_sequential_cuped"]["rejection_rate"],
                         "coverage_user_sequential": res["user_sequential"]["coverage"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m experiments aa-study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", type=int, default=500)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--looks", type=int, default=6)
    ap.add_argument("--mean-requests", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--power", action="store_true", help="also the A/B power table")
    ap.add_argument("--calibrate", type=int, metavar="MINUTES", default=0,
                    help="take users, requests per user and the propensities' Beta from this "
                         "many simulated minutes of the simulator (3,000-user world; --users "
                         "and --mean-requests are then ignored)")
    a = ap.parse_args(argv)
    s = StudySettings(experiments=a.experiments, users=a.users, looks=a.looks,
                      mean_requests=a.mean_requests, seed=a.seed)
    if a.calibrate:
        cal = calibrate_from_simulator(n_users=3000, minutes=a.calibrate, join_window_s=3600)
        s = cal.settings(experiments=a.experiments, looks=a.looks, seed=a.seed)
        print(f"calibrated to {a.calibrate} simulated minutes: {cal.users:,} users, "
              f"{cal.requests / cal.users:.2f} requests each, watch-through "
              f"{cal.watch_through:.3f}, Beta({cal.beta[0]:.2f}, {cal.beta[1]:.2f})")
    result = {"settings": {k: v for k, v in s.__dict__.items() if k != "request_counts"},
              "aa": run_study(s)}
    print(f"A/A: {s.experiments} experiments, {s.users} users, ~{s.mean_requests:g} requests "
          f"each, {s.looks} looks")
    print("| analysis | false positive rate (any look) | coverage (all looks) |")
    print("|---|---:|---:|")
    for m, r in result["aa"].items():
        print(f"| {m} | {r['rejection_rate']:.1%} | {r['coverage']:.1%} |")
    if a.power:
        result["power"] = power_table(base=s)
        print("\n| lift | users | power (user_sequential) |\n|---:|---:|---:|")
        for row in result["power"]:
            print(f"| {row['lift']:+.2f} | {row['users']:,} | {row['power_user_sequential']:.0%} |")
    print(json.dumps(result["aa"]))
    return 0
