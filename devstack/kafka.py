"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, from the official jars on Maven Central.

``python -m devstack.kafka fetch`` resolves the jars into ``.cache/kafka/libs`` with Maven;
``up --port N`` formats a data dir and starts the broker in the background (pid file under
``.cache/kafka``); ``down`` stops every broker it started. Tests and the demo use
:class:`KafkaBroker` directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "kafka"
LIBS = CACHE / "libs"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
LOG4J = Path(__file__).resolve().parent / "kafka" / "log4j.properties"
MAIN_JAR_GLOB = "kafka_2.13-*.jar"


def fetch(quiet: bool = True) -> Path:
    """Resolve the broker jars with Maven (idempotent: skipped when already present)."""
    if LIBS.is_dir() and any(LIBS.glob(MAIN_JAR_GLOB)):
        return LIBS
    if shutil.which("mvn") is None:
        raise SystemExit("devstack.kafka: Maven (mvn) is required to fetch the Kafka jars; install Maven 3")
    tmp = LIBS.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    if quiet:
        cmd.insert(1, "-q")
    subprocess.run(cmd, check=True)
    shutil.rmtree(LIBS, ignore_errors=True)
    tmp.rename(LIBS)
    return LIBS


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise SystemExit("devstack.kafka: Java 17 (java) is required to run the broker")
    return java


class KafkaBroker:
    """One combined broker+controller node. Use as a context manager or call start()/stop()."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None,
                 heap: str = "512m", num_partitions: int = 4,
                 sasl_users: dict[str, str] | None = None,
                 initial_rebalance_delay_ms: int = 0) -> None:
        """``sasl_users`` (user -> password): clients must authenticate with SASL/PLAIN on
        ``port`` (SASL_PLAINTEXT); the broker's own traffic uses a second, internal port.
        ``initial_rebalance_delay_ms``: how long a new consumer group's first join waits for
        more members (Kafka's default is 3000; 0 here so that tests start consuming at once)."""
        self.port = port or free_port()
        self.controller_port = free_port()
        self.sasl_users = dict(sasl_users or {})
        self.internal_port = free_port() if self.sasl_users else None
        self.data_dir = Path(data_dir) if data_dir else CACHE / f"data-{self.port}"
        self.heap = heap
        self.num_partitions = num_partitions
        self.initial_rebalance_delay_ms = int(initial_rebalance_delay_ms)
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listeners(self) -> list[str]:
        if not self.sasl_users:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:"
                f"{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users.items())
        return [
            f"listeners=SASL_PLAINTEXT://127.0.0.1:{self.port},INTERNAL://127.0.0.1:"
            f"{self.internal_port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{self.port},INTERNAL://127.0.0.1:"
            f"{self.internal_port}",
            "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,"
            "CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=INTERNAL",
            "sasl.enabled.mechanisms=PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common."
            f"security.plain.PlainLoginModule required {users};",
        ]

    def _properties(self) -> str:
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            *self._listeners(),
            "controller.listener.names=CONTROLLER",
            f"log.dirs={self.data_dir / 'logs'}",
            f"num.partitions={self.num_partitions}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            f"group.initial.rebalance.delay.ms={self.initial_rebalance_delay_ms}",
            "auto.create.topics.enable=true",
            "message.max.bytes=4194304",
            "log.retention.hours=168",
            "",
        ])

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        libs = fetch()
        java = _java()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        fresh = not (self.data_dir / "logs" / "meta.properties").exists()
        props.write_text(self._properties())
        cp = f"{libs}/*"
        if fresh:
            cluster_id = subprocess.run(
                [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
                check=True, capture_output=True, text=True).stdout.strip()
            subprocess.run(
                [java, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
                check=True, capture_output=True, text=True)
        log = open(self.data_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
             f"-Dlog4j.configuration=file:{LOG4J}", "-cp", cp, "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while not wait_for_port("127.0.0.1", self.port, timeout=0.5):
            if self.process.poll() is not None:
                tail = (self.data_dir / "broker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kafka broker exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Kafka broker did not listen on {self.bootstrap} within {timeout}s")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pid_file(port: int) -> Path:
    return CACHE / f"broker-{port}.pid"


def up(port: int) -> None:
    pid_file = _pid_file(port)
    if pid_file.exists():
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, 0)
            print(f"Kafka broker already running on 127.0.0.1:{port} (pid {pid})")
            return
        except ProcessLookupError:
            pid_file.unlink()
    if wait_for_port("127.0.0.1", port, timeout=0.2):
        raise SystemExit(f"devstack.kafka: port {port} is already in use by another process")
    broker = KafkaBroker(port=port).start()
    assert broker.process is not None
    pid_file.write_text(str(broker.process.pid))
    print(f"Kafka broker up on {broker.bootstrap} (pid {broker.process.pid}, data {broker.data_dir})")


def down() -> None:
    stopped = 0
    for pid_file in sorted(CACHE.glob("broker-*.pid")):
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(300):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)
        stopped += 1
    print(f"stopped {stopped} Kafka broker(s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.kafka", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the broker jars from Maven Central")
    p_up = sub.add_parser("up", help="start a broker in the background")
    p_up.add_argument("--port", type=int, default=9092)
    sub.add_parser("down", help="stop brokers started with 'up'")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(f"Kafka jars in {fetch()}")
    elif args.command == "up":
        up(args.port)
    else:
        down()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["KafkaBroker", "fetch"]
