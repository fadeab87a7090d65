"""The drills' judge of failed user requests (tests/platform/helpers.py) can fail."""

from __future__ import annotations

from datetime import datetime

import pytest

from movierec_core import RecommendationRequest
from movierec_core.events import format_event
from simulator.recommenders import REFUSED_ERROR, TIMEOUT_ERROR
from tests.platform.helpers import TeeSink, assert_no_failed_request


class _Sink:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def send(self, lines: list[bytes]) -> None:
        self.lines += lines


def _line(uid: int, status: int = 200, error: str = "") -> bytes:
    ids = ("the+matrix+1999",) if status == 200 else ()
    r = RecommendationRequest(datetime(2026, 1, 1), uid, "router", status, ids, error, 12)
    return format_event(r).encode()


def test_ok_requests_pass_and_a_refused_one_fails_with_its_line():
    tee = TeeSink(_Sink())
    tee.send([_line(u) for u in range(2_000)])
    assert_no_failed_request(tee, 0)
    mark = tee.mark()
    tee.send([_line(7, 0, REFUSED_ERROR), _line(8)])
    with pytest.raises(AssertionError, match="user 7 via router: status 0"):
        assert_no_failed_request(tee, mark)
    assert_no_failed_request(tee, mark + 1)  # after it: clean again


def test_late_answers_are_tolerated_up_to_their_share_and_errors_never():
    tee = TeeSink(_Sink())
    tee.send([_line(u) for u in range(1_998)] + [_line(1, 0, TIMEOUT_ERROR)] * 2)
    assert_no_failed_request(tee, 0)  # 2 of 2,000 late: 0.1 %
    tee.send([_line(2, 0, TIMEOUT_ERROR)])
    with pytest.raises(AssertionError):
        assert_no_failed_request(tee, 0)  # 3 of 2,001
    tee2 = TeeSink(_Sink())
    tee2.send([_line(u) for u in range(5_000)] + [_line(3, 500, "java.io.IOException: 500")])
    with pytest.raises(AssertionError):
        assert_no_failed_request(tee2, 0)  # an error status, however rare
