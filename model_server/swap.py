"""Zero-downtime model swaps.

The serving model is one immutable object behind one attribute (``ModelHolder.current``).
A request reads the attribute once and ranks with that object to the end, so in-flight
requests finish on the old version while a new one loads in a background thread; the swap is
a single reference assignment. The old version is freed when its last request drops it.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from model_server.metrics import MODEL_SWAPS, set_model_info
from movierec_core.registry import RegistryError

# what resolving an alias raises while the registry does not have it yet
NOT_THERE_YET = (RegistryError, FileNotFoundError)

log = logging.getLogger(__name__)


class Servable(Protocol):
    version: str
    model_type: str
    path: Path


S = TypeVar("S", bound=Servable)


class ModelHolder(Generic[S]):
    """The model in service, how to find the next one, and the background loader."""

    def __init__(self, load: Callable[[Path], S], resolve: Callable[[str | None], Path]) -> None:
        """``resolve(None)`` → bundle dir the config points at (alias or model_dir);
        ``resolve(version)`` → that version's bundle dir; ``load(dir)`` → a servable."""
        self._load = load
        self._resolve = resolve
        self._lock = threading.Lock()  # one load at a time
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.current: S | None = None
        self._alias_seen: Path | None = None  # where the alias pointed at the last poll

    def load_initial(self, wait: bool = False) -> S | None:
        """Load what the config points at. With ``wait``, a registry that has no such alias yet
        (a fresh install, before the first training) is not an error: nothing is loaded and the
        poller loads the first version once the alias appears."""
        try:
            self._alias_seen = Path(self._resolve(None)).resolve()
        except NOT_THERE_YET:
            if not wait:
                raise
            log.warning("no model to serve yet; waiting for it to be registered")
            return None
        return self.reload(None)

    def reload(self, version: str | None = None, *, force: bool = False) -> S:
        """Load ``version`` (None: what the config points at) and swap it in. Blocking.

        Loading the version already in service is a no-op unless ``force``.
        """
        with self._lock:
            path = Path(self._resolve(version)).resolve()
            current = self.current
            if current is not None and current.path == path and not force:
                return current
            new = self._load(path)
            # a loaded model is long-lived: out of the cyclic collector's sight, so that a
            # full collection does not walk it while requests wait (a stall in the p99)
            gc.freeze()
            previous = None if current is None else (current.version, current.model_type)
            self.current = new  # the swap: requests that already hold `current` keep it
            set_model_info(new.version, new.model_type, previous)
            if current is not None:
                MODEL_SWAPS.inc()
                log.info("swapped model %s -> %s", current.version, new.version)
            else:
                log.info("serving model %s (%s) from %s", new.version, new.model_type, path)
            return new

    def start_polling(self, interval_s: float) -> None:
        """Check every ``interval_s`` whether the alias moved; load and swap if so.

        Only a *move* triggers a load: a version pinned by an admin reload stays in service
        until the alias points somewhere new. A version that fails to load is not retried
        until the alias moves again."""
        if interval_s <= 0 or self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, args=(interval_s,),
                                        name="alias-poller", daemon=True)
        self._poller.start()

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                try:
                    path = Path(self._resolve(None)).resolve()
                except NOT_THERE_YET:
                    if self.current is None:
                        continue  # still waiting for the first version: not an error
                    raise
                if path == self._alias_seen:
                    continue
                self._alias_seen = path
                self.reload(None)
            except Exception:  # a broken new version must not take the old one down
                log.exception("loading the new model version failed; keeping %s",
                              getattr(self.current, "version", None))

    def stop(self) -> None:
        self._stop.set()
