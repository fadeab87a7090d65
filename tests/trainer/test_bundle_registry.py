"""Bundles (what the server loads) and the file registry (versions + atomic aliases)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from movierec_core.models import confidence, load_bundle, segment_chain, segment_of
from movierec_core.models.confidence import ConfidenceWeights
from movierec_core.models.testing import tiny_bundle
from movierec_core.registry import CHALLENGER, CHAMPION, FileRegistry, RegistryError, open_registry


def test_tiny_bundle_loads_memory_mapped_with_everything_the_server_needs(tmp_path):
    b = load_bundle(tiny_bundle(tmp_path / "b"))
    assert b.manifest["model_type"] == "als"
    assert b.manifest["counts"] == {"users": 60, "items": 40, "interactions": 60 * 6}
    # the smallest index types that fit: half the pages of int64/int32
    assert isinstance(b.user_ids, np.memmap) and b.user_ids.dtype == np.int32
    assert b.seen_indices.dtype == np.uint16 and b.seen_indptr.dtype == np.int32
    assert b.seen.indices.dtype == np.int32 and b.seen.nnz == 60 * 6  # scipy's view, on demand
    assert isinstance(b.model.item_factors, np.memmap) and b.model.item_factors.dtype == np.float32
    assert b.user_row(1000) == 0 and b.user_row(1590) == 59 and b.user_row(1001) is None
    assert b.user_row(5) is None and b.user_row(10**9) is None and b.user_row(2**40) is None
    assert b.item_index("movie+7+2000") == 7 and b.movie_ids([0, 39]) == ["movie+0+2000", "movie+39+2000"]
    assert b.costs[0] == 0.0 and b.costs[-1] == pytest.approx(1.0)
    seen = set(b.seen_items(3).tolist())
    items, _ = b.model.recommend(3, k=10)
    assert len(items) == 10 and not seen & set(items.tolist())
    cold = b.cold_start_items(25, "F", "writer", k=5)
    assert len(cold) == 5 and len(set(cold)) == 5
    # fold-in works on the read-only (mmap) factors
    row = np.zeros(40, np.float32)
    row[[1, 4, 7]] = 1.0
    assert b.model.scores_for_items(row).shape == (40,)


def test_segments_fall_back_from_specific_to_everyone():
    assert segment_of(34, "f", "Scientist") == "25-34|F|scientist"
    assert segment_chain(None, "", None) == ["?|?|?", "?|?", "?", "*"]
    assert segment_chain(70, "M", "retired")[1:] == ["55+|M", "55+", "*"]


def test_confidence_rule():
    assert confidence(50, 100, None) == pytest.approx(0.5)
    assert confidence(500, 100, 5) == pytest.approx(2.0)  # watch capped at 1, +5/5
    assert confidence(0, 100, 4) == pytest.approx(0.8)
    assert confidence(50, 0, None) == pytest.approx(0.5)  # unknown runtime → 100 min
    assert confidence(np.nan, 90, 9) == 0.0  # no watch, out-of-range stars ignored
    w = ConfidenceWeights(watch=2.0, rating=0.0, dislike_below=3)
    np.testing.assert_allclose(confidence(np.array([45, 45]), np.array([90, 90]), np.array([2, 4]), w),
                               [0.0, 1.0])


def test_register_versions_aliases_promote_rollback(tmp_path):
    reg = FileRegistry(tmp_path / "registry")
    b1 = tiny_bundle(tmp_path / "b1", seed=1)
    b2 = tiny_bundle(tmp_path / "b2", seed=2)
    v1 = reg.register("movierec", b1, aliases=(CHALLENGER, CHAMPION))
    v2 = reg.register("movierec", b2, aliases=(CHALLENGER,))
    assert (v1, v2) == ("v0001", "v0002")
    assert reg.resolve("movierec", CHAMPION) == tmp_path / "registry/movierec/versions/v0001"
    assert reg.resolve("movierec", "v0002") == tmp_path / "registry/movierec/versions/v0002"
    assert load_bundle(reg.resolve("movierec", CHALLENGER)).version == "v0002"
    assert [v.aliases for v in reg.versions("movierec")] == [(CHAMPION,), (CHALLENGER,)]
    assert reg.promote("movierec") == "v0002"
    assert reg.get_alias("movierec", CHAMPION) == "v0002"
    assert reg.rollback("movierec") == "v0001"
    assert reg.get_alias("movierec", CHAMPION) == "v0001"
    with pytest.raises(RegistryError, match="no previous version"):
        reg.rollback("movierec")
    with pytest.raises(RegistryError, match="no version"):
        reg.resolve("movierec", "v0009")
    alias = json.loads((tmp_path / "registry/movierec/aliases/champion.json").read_text())
    assert alias["version"] == "v0001" and alias["rolled_back_from"] == "v0002"
    assert not list((tmp_path / "registry/movierec/aliases").glob(".*.tmp"))
    assert reg.show("movierec", "v0001").manifest["version"] == "v0001"


def test_open_registry_rejects_unknown_backends(tmp_path):
    assert isinstance(open_registry(f"file://{tmp_path}"), FileRegistry)
    with pytest.raises(RegistryError, match="not implemented"):
        open_registry("s3://bucket/registry")


def test_interactions_row_merges_training_row_and_online_events(tmp_path):
    b = load_bundle(tiny_bundle(tmp_path / "b"))
    assert b.confidence_weights == ConfidenceWeights()
    base = b.seen_items(0)
    row = b.interactions_row([("movie+39+2000", 50, None), ("unknown+movie", 90, 5)], base_row=0)
    assert row.shape == (1, 40)
    assert set(row.indices.tolist()) == set(base.tolist()) | {39}
    assert row[0, 39] == pytest.approx(0.5)  # 50 of 100 minutes
    fresh = b.interactions_row([("movie+1+2000", 100, 5)])
    assert fresh.nnz == 1 and fresh[0, 1] == pytest.approx(2.0)
    items, _ = b.model.recommend_items(fresh, k=5)
    assert 1 not in items.tolist() and len(items) == 5


def test_user_ids_beyond_int32_keep_int64_and_large_catalogues_keep_int32_indices(tmp_path):
    from movierec_core.models.bundle import save_bundle
    from movierec_core.models.factor import ALSModel

    rng = np.random.default_rng(0)
    n_users, n_items = 5, 70_000
    model = ALSModel(factors=4)
    model.user_factors = rng.standard_normal((n_users, 4), dtype=np.float32)
    model.item_factors = rng.standard_normal((n_items, 4), dtype=np.float32)
    model.n_items = n_items
    user_ids = np.array([1, 7, 2**31, 2**40, 2**62], dtype=np.int64)
    seen = sp.csr_matrix((np.ones(5, np.float32), np.array([0, 65_536, 69_999, 3, 4]),
                          np.arange(6)), shape=(n_users, n_items))
    b = load_bundle(save_bundle(tmp_path / "b", model, [f"m{i}" for i in range(n_items)],
                                user_ids, seen))
    assert b.user_ids.dtype == np.int64 and b.seen_indices.dtype == np.int32
    assert [b.user_row(int(u)) for u in user_ids] == [0, 1, 2, 3, 4]
    assert b.user_row(2**40 + 1) is None
    assert b.seen_items(1).tolist() == [65_536] and b.seen_items(2).tolist() == [69_999]


def test_registered_bundles_are_hashed_and_a_tampered_one_is_refused(tmp_path) -> None:
    """Every file of a bundle is hashed at registration (hashes.json) and checked at load: a
    changed byte in the model's factors (or a missing file) refuses the load, naming the file."""
    import json as _json

    from movierec_core.models.bundle import BundleIntegrityError, load_bundle, verify_hashes
    from movierec_core.models.testing import tiny_bundle
    from movierec_core.registry import FileRegistry

    bundle = tiny_bundle(tmp_path / "b")
    assert verify_hashes(bundle) == 0  # never registered: nothing to check against
    registry = FileRegistry(tmp_path / "registry")
    version = registry.register("movierec", bundle)
    path = registry.resolve("movierec", version)
    hashes = _json.loads((path / "hashes.json").read_text())
    assert "manifest.json" in hashes and "model/item_factors.npy" in hashes
    assert "registry.json" not in hashes
    assert verify_hashes(path) == len(hashes)
    load_bundle(path)  # loads
    target = path / "model" / "item_factors.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.unlink()  # (a hard link to the source bundle: replace, do not write through)
    target.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="model/item_factors.npy does not match"):
        load_bundle(path)
    target.unlink()
    with pytest.raises(BundleIntegrityError, match="model/item_factors.npy is missing"):
        load_bundle(path)
