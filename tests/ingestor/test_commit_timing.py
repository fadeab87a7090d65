"""When the pipelined batch is committed: as soon as its lake files and upserts are written,
not after the next batch (a quiet stream would otherwise hold its offsets). With librdkafka
(the group protocol on its own threads) the consumer is polled briefly meanwhile; kafka-python
(the group protocol inside poll(): short polls stalled its rejoin) keeps the full timeout."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from ingestor.app import _BRIEF_POLL_S, Ingestor
from ingestor.config import register_configs
from ingestor.consumers import Polled
from movierec_core.config import compose
from movierec_core.events import watch_line


class ScriptedConsumer:
    """Records polls and commits in order; the pipelined write finishes at the third poll."""

    def __init__(self, background_group: bool, write: Future) -> None:
        self.background_group = background_group
        self.write = write
        self.log: list[tuple[str, object]] = []

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self.log.append(("poll", timeout_s))
        if sum(1 for kind, _ in self.log if kind == "poll") == 3:
            self.write.set_result(set())
        return Polled()

    def commit(self, offsets: dict[int, int]) -> None:
        self.log.append(("commit", offsets))

    def assignment(self) -> set[int]:
        return set()


def pipelined(tmp_path, consumer_type, background_group: bool, wait_s: float, poll_ms: int,
              offsets: dict[int, int]) -> tuple[Ingestor, ScriptedConsumer]:
    """An ingestor whose previous batch (``offsets``) is being written, with a scripted
    consumer of ``consumer_type`` that finishes the write at its third poll."""
    register_configs()
    ingestor = Ingestor(compose("ingestor", [
        f"data.lake_root={tmp_path / 'lake'}", f"ingestor.batch_max_wait_s={wait_s}",
        f"ingestor.poll_timeout_ms={poll_ms}",
        f"data.online_store_path={tmp_path / 'online.sqlite'}"]))
    write: Future = Future()
    consumer = consumer_type(background_group, write)
    ingestor.consumer = consumer
    ingestor._pending = ((write,), offsets, None)
    return ingestor, consumer


@pytest.mark.parametrize("background_group", [True, False])
def test_the_pipelined_batch_is_committed_once_written(tmp_path, background_group) -> None:
    ingestor, consumer = pipelined(tmp_path, ScriptedConsumer, background_group, 0.5, 100,
                                   {0: 10, 3: 7})
    assert ingestor._fill_buffer() == 0
    commit_at = consumer.log.index(("commit", {0: 10, 3: 7}))
    assert commit_at == 3  # right after the poll during which the write finished
    assert [entry for entry in consumer.log if entry[0] == "commit"] == [
        ("commit", {0: 10, 3: 7})]
    before = [t for _, t in consumer.log[:commit_at]]
    after = [t for kind, t in consumer.log[commit_at + 1:] if kind == "poll"]
    expected = _BRIEF_POLL_S if background_group else 0.1
    assert before == [pytest.approx(expected, abs=1e-9)] * 3
    assert after and all(t <= 0.1 + 1e-9 for t in after)
    assert ingestor._pending is None and ingestor._next_offsets == {0: 10, 3: 7}


class TailConsumer(ScriptedConsumer):
    """The stream's last records come with the first poll; nothing after."""

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        super().poll(timeout_s, max_records)
        if len(self.log) == 1:
            lines = [watch_line(f"2025-03-02T14:07:{i:02d}", 7, "heat+1995", i).encode()
                     for i in range(3)]
            return Polled(lines, [0] * 3, [11, 12, 13], [0] * 3)
        return Polled()


@pytest.mark.parametrize("background_group", [True, False])
def test_the_last_records_are_not_held_for_one_more_poll(tmp_path, background_group) -> None:
    """While the previous batch is written, librdkafka's consumer is polled briefly; once that
    batch is committed, a brief poll that found nothing ends the batch (before: one more poll
    of the full timeout held a stream's last records, ~0.2 s a worker in bench/ingest.py)."""
    ingestor, consumer = pipelined(tmp_path, TailConsumer, background_group, 5, 1000, {0: 10})
    assert ingestor._fill_buffer() == 3
    polls = [t for kind, t in consumer.log if kind == "poll"]
    if background_group:  # brief polls until the write is done, committed, then no more polls
        assert consumer.log[3] == ("commit", {0: 10}) and len(consumer.log) == 4
        assert polls == [pytest.approx(_BRIEF_POLL_S, abs=1e-9)] * 3
    else:  # kafka-python: full polls; the first that finds nothing ends the batch
        assert polls == [pytest.approx(1.0, abs=1e-9)] * 2
    assert ingestor._buffer.offsets == [11, 12, 13]


class BlockingDeadLetters:
    """A DLQ whose acknowledgement waits for ``released``; records the thread that sent."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.sent: list[tuple[str, list[bytes]]] = []
        self.forgotten: list[dict[int, int]] = []

    def send(self, items, retry_backoff_s, max_backoff_s, give_up_at) -> int:
        self.released.wait(10)
        self.sent.append((threading.current_thread().name,
                          [item.rejection.line for item in items]))
        return len(items)

    def forget_below(self, offsets: dict[int, int]) -> None:
        self.forgotten.append(dict(offsets))


def test_the_pipelined_batch_is_committed_only_once_its_dead_letters_are_acknowledged(
        tmp_path) -> None:
    """The dead letters are sent beside the lake and store writes, off the consumer's thread;
    the batch's offsets are committed after the broker acknowledged them, never before."""
    register_configs()
    ingestor = Ingestor(compose("ingestor", [
        f"data.lake_root={tmp_path / 'lake'}", "ingestor.online_store=false"]))
    consumer = ScriptedConsumer(False, Future())
    ingestor.consumer = consumer
    dlq = ingestor.dead_letters = BlockingDeadLetters()
    good = watch_line("2025-03-02T10:00:00", 7, "the+matrix+1999", 3).encode() + b"\n"
    ingestor._buffer = Polled([good, b"not a telemetry line\n"], [0, 0], [41, 42], [0, 0])
    ingestor._process_buffer()
    assert dlq.sent == [] and ingestor._pending is not None  # sending on a pool thread
    finishing = threading.Thread(target=ingestor._finish_pending)
    finishing.start()
    finishing.join(0.3)
    assert finishing.is_alive() and consumer.log == []  # no commit while unacknowledged
    dlq.released.set()
    finishing.join(10)
    assert not finishing.is_alive()
    assert [(name.startswith("lake-and-store"), lines) for name, lines in dlq.sent] == [
        (True, [b"not a telemetry line\n"])]
    assert consumer.log == [("commit", {0: 43})] and dlq.forgotten == [{0: 43}]
    ingestor._store_pool.shutdown(wait=True)


def test_a_revocation_waits_for_the_pipelined_dead_letters(tmp_path) -> None:
    """The partitions' next owner reads the DLQ's tail once when assigned: the dead letters
    this instance sends on the pipeline's threads are in the DLQ before the partitions go."""
    ingestor, _ = pipelined(tmp_path, ScriptedConsumer, True, 0.5, 100, {0: 10})
    write = ingestor._pending[0][0]
    revoking = threading.Thread(target=ingestor._on_revoked, args=([0, 1],))
    revoking.start()
    revoking.join(0.3)
    assert revoking.is_alive()  # still waiting for the batch's writes and dead letters
    write.set_result(set())
    revoking.join(5)
    assert not revoking.is_alive()
    ingestor._on_revoked([2])  # nothing pending left to wait for: returns at once
    ingestor._pending = None
    ingestor._on_revoked([3])


class SteadyConsumer:
    """A backlog: every poll returns one more watch line (60 bytes each)."""

    background_group = True

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self.polls += 1
        line = watch_line(f"2025-03-02T14:07:{self.polls:02d}", 7, "heat+1995", 1).encode()
        return Polled([line.ljust(60, b" ")], [0], [self.polls], [0])

    def assignment(self) -> set[int]:
        return {0}


def test_a_batch_closes_at_its_bytes_bound(tmp_path) -> None:
    """Long lines: the batch closes once its values hold ``batch_max_bytes`` (the poll that
    crosses it is kept whole), long before ``batch_max_records`` or the batch's time."""
    register_configs()
    ingestor = Ingestor(compose("ingestor", [
        f"data.lake_root={tmp_path / 'lake'}", "ingestor.batch_max_wait_s=30",
        "ingestor.batch_max_records=1000", "ingestor.batch_max_bytes=150",
        f"data.online_store_path={tmp_path / 'online.sqlite'}"]))
    ingestor.consumer = consumer = SteadyConsumer()
    assert ingestor._fill_buffer() == 3
    assert consumer.polls == 3 and ingestor._buffer.nbytes == 180
    assert ingestor._buffer.offsets == [1, 2, 3]
