"""batch-recommend and the Microsoft Recommenders protocol on MovieLens-format data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.cli import main
from trainer.config import BatchConfig
from trainer.movielens import read_ratings, run_protocol, stratified_split

ML_SMALL = "ml-latest-small/ratings.csv"
# measured with the production configuration (trainer.batch.model), seed 42: see docs/trainer.md
P_AT_10_FLOOR = 0.345
NDCG_AT_10_FLOOR = 0.39


def small_csv(path, n_users=40, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for m in rng.choice(n_items, size=rng.integers(3, 12), replace=False):
            rows.append((u, int(m) + 100 * (u % 3 == 0), float(rng.integers(1, 11)) / 2, 1_000_000 + u))
    rows.append((999, 5, 4.0, 2_000_000))  # a user with a single rating
    pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"]).to_csv(path, index=False)
    return path


def test_batch_recommend_writes_top_k_unseen_per_user(tmp_path, capsys):
    src = small_csv(tmp_path / "ratings.csv")
    out = tmp_path / "recs.csv"
    rc = main(["batch-recommend", "--interactions", str(src), "--k", "5", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["userId", "movieId", "score"]
    ratings = pd.read_csv(src)
    assert set(recs["userId"]) == set(ratings["userId"])
    assert (recs.groupby("userId").size() == 5).all()
    seen = set(zip(ratings["userId"], ratings["movieId"], strict=True))
    assert not any((u, m) in seen for u, m in zip(recs["userId"], recs["movieId"], strict=True))
    for _, g in recs.groupby("userId"):
        assert (np.diff(g["score"].to_numpy()) <= 1e-9).all()


@pytest.mark.parametrize("content, message", [
    ("userId,movieId,rating,timestamp\n1,2,nan,3\n", "NaN or outside"),
    ("userId,movieId,rating,timestamp\n1,2,9.5,3\n", "rating 9.5"),
    ("userId,movieId,rating,timestamp\n", "no interactions"),
    ("", "empty"),
    ("user,movie\n1,2\n", "missing column"),
    ("userId,movieId,rating,timestamp\nx,2,4,3\n", "userId is not an integer"),
])
def test_batch_recommend_refuses_bad_input(tmp_path, capsys, content, message):
    src = tmp_path / "bad.csv"
    src.write_text(content)
    rc = main(["batch-recommend", "--interactions", str(src), "--k", "10", "--output",
               str(tmp_path / "o.csv")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer: error:") and message in err
    assert not (tmp_path / "o.csv").exists()


def test_missing_file_is_refused(tmp_path, capsys):
    assert main(["batch-recommend", "--interactions", str(tmp_path / "nope.csv"), "--output",
                 str(tmp_path / "o.csv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_stratified_split_is_per_user_75_25_and_seeded(tmp_path):
    df = read_ratings(small_csv(tmp_path / "r.csv"))
    a_train, a_test = stratified_split(df, 0.75, 42)
    b_train, _ = stratified_split(df, 0.75, 42)
    pd.testing.assert_frame_equal(a_train, b_train)
    assert len(a_train) + len(a_test) == len(df)
    sizes = df.groupby("userId").size()
    assert (a_train.groupby("userId").size() == np.round(sizes * 0.75)).all()


def test_protocol_on_ml_latest_small_meets_the_measured_floor(shared_dir):
    path = shared_dir / "data" / ML_SMALL
    if not path.is_file():
        pytest.skip(f"{path} not available")
    res = run_protocol(read_ratings(path), dict(BatchConfig().model), k=10, seed=42)
    assert res["users"] >= 610
    assert res["precision@10"] >= P_AT_10_FLOOR
    assert res["ndcg@10"] >= NDCG_AT_10_FLOOR
