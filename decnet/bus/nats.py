"""`NatsBus`: the bus over NATS, with JetStream retention for the rule topics.

- `publish` is a plain core NATS publish: it never waits for an acknowledgement. The
  JetStream stream (default `DECNET_TTP`) captures every subject under `ttp.rule.>`, so
  rule changes are retained. While the client is disconnected, publishes are buffered
  (up to `pending_size` bytes) and sent on reconnect; past that, `BusUnavailableError`.
- `subscribe(pattern)` with a pattern inside `ttp.rule.>` reads from a JetStream push
  consumer: `deliver="all"` replays the retained history, and a `durable` name makes a
  restarted consumer resume where it left off. A message is acknowledged when the
  consumer asks for the next one (or closes the subscription): delivery is
  at-least-once. Any other pattern is a core NATS subscription (live messages only).
- An ephemeral consumer (no durable name) survives a disconnection of up to
  `EPHEMERAL_INACTIVE_THRESHOLD` seconds; past that the server deletes it and the
  subscription stalls. Use a durable name (or `durable_prefix`) where outages matter.
- With `durable_prefix` set at connect, every JetStream subscription is durable: an
  explicit name becomes `{prefix}_{durable}`, and a subscription without one gets a
  name derived from its pattern, so `Bus.subscribe(pattern)` resumes across restarts.
- With `namespace` set at connect, every topic travels as `{namespace}.{topic}` (and the
  stream captures `{namespace}.ttp.rule.>`): deployments sharing one NATS server keep
  apart, and their code still names the topics of `decnet.bus.topics`. `max_msgs`
  bounds what the stream keeps (the oldest go first).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import weakref
from collections.abc import Sequence
from typing import Any, Final, Literal

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamConfig

from decnet.bus.base import Bus, BusMessage, BusSubscription
from decnet.bus.errors import BusClosedError, BusError, BusUnavailableError
from decnet.bus.matching import pattern_covers, topic_tokens, validate_pattern
from decnet.bus.topics import RULE_TOPICS

__all__ = ["DEFAULT_NATS_URL", "DEFAULT_STREAM", "NatsBus", "NatsSubscription"]

logger = logging.getLogger(__name__)

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"
DEFAULT_STREAM: Final = "DECNET_TTP"
EPHEMERAL_INACTIVE_THRESHOLD: Final = 120.0  # seconds

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,200}")
_STREAM_NAME_IN_USE: Final = 10058
_NATS_UNAVAILABLE: Final = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
)
_NATS_CLOSED: Final = (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: expected [A-Za-z0-9_-]{{1,200}}")
    return value


def _is_stream_pattern(pattern: str) -> bool:
    return pattern_covers(RULE_TOPICS, pattern)


async def _quiet_unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except nats.errors.Error as exc:  # closed, draining or already unsubscribed
        logger.debug("NATS unsubscribe of %r: %s", sub.subject, exc)


def _abandon(
    loop: asyncio.AbstractEventLoop, sub: Subscription, tasks: set[asyncio.Task[None]]
) -> None:
    """Finalizer of a NatsSubscription garbage collected without `aclose()`."""

    def spawn() -> None:
        task = loop.create_task(_quiet_unsubscribe(sub))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    if not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(spawn)


class NatsSubscription(BusSubscription):
    """Messages matching one pattern. Close with `aclose()` (also on garbage collection)."""

    def __init__(
        self,
        sub: Subscription,
        pattern: str,
        *,
        jetstream: bool,
        durable: str | None,
        tasks: set[asyncio.Task[None]],
        namespace: str | None = None,
    ) -> None:
        self._sub = sub
        self._strip = 0 if namespace is None else len(namespace) + 1
        self._messages = sub.messages
        self._pattern = pattern
        self._jetstream = jetstream
        self._durable = durable
        self._unacked: Msg | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, _abandon, asyncio.get_running_loop(), sub, tasks)

    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def jetstream(self) -> bool:
        """True when this reads from the JetStream stream (retained, acknowledged)."""
        return self._jetstream

    @property
    def durable(self) -> str | None:
        """The durable consumer name, or None for an ephemeral or core subscription."""
        return self._durable

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> NatsSubscription:
        return self

    async def _ack_previous(self) -> None:
        msg, self._unacked = self._unacked, None
        if msg is None:
            return
        try:
            await msg.ack()
        except nats.errors.Error as exc:  # redelivered after ack_wait: at-least-once
            logger.debug("NATS ack on %r failed: %s", msg.subject, exc)

    async def __anext__(self) -> BusMessage:
        await self._ack_previous()
        while not self._closed:
            try:
                msg = await self._messages.__anext__()
            except StopAsyncIteration:  # unsubscribed, or the connection closed
                self._closed = True
                self._finalizer.detach()
                break
            if self._jetstream:
                if JetStreamContext.is_status_msg(msg):  # heartbeat / flow control
                    continue
                self._unacked = msg
            return BusMessage(msg.subject[self._strip:], msg.data)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Acknowledge what was taken, hand back what was not, unsubscribe. Idempotent."""
        if self._finalizer.detach() is None:
            self._closed = True
            return
        self._closed = True
        await self._ack_previous()
        if self._jetstream:
            # Messages delivered to this client but never taken: ask for an immediate
            # redelivery instead of waiting out the consumer's ack_wait.
            while self._sub.pending_msgs > 0:
                try:
                    msg = await self._sub.next_msg(timeout=0.1)
                    if not JetStreamContext.is_status_msg(msg):
                        await msg.nak()
                except nats.errors.Error:
                    break
        await _quiet_unsubscribe(self._sub)


class NatsBus(Bus):
    """The bus over a NATS connection. Create it with `await NatsBus.connect(...)`."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        url: str,
        stream: str,
        durable_prefix: str | None,
        namespace: str | None = None,
    ) -> None:
        self._namespace = namespace
        self._nc = nc
        self._js = js
        self._url = url
        self._stream = stream
        self._durable_prefix = durable_prefix
        self._closed = False
        self._subscriptions: weakref.WeakSet[NatsSubscription] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(
        cls,
        url: str | Sequence[str] = DEFAULT_NATS_URL,
        *,
        stream: str = DEFAULT_STREAM,
        durable_prefix: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 0.5,
        pending_size: int = 2 * 1024 * 1024,
        name: str | None = None,
        namespace: str | None = None,
        max_msgs: int | None = None,
    ) -> NatsBus:
        """Connect, reconnecting forever after any later loss, and ensure the stream.

        The first connection must succeed within `connect_timeout` seconds, else
        `BusUnavailableError`. `pending_size` bounds the bytes buffered while
        disconnected. `name` labels the connection in the server's monitoring.
        `namespace` prefixes every subject on the wire; `max_msgs` bounds the stream.
        """
        _check_name(stream, "stream name")
        if namespace is not None:
            _check_name(namespace, "namespace")
        if durable_prefix is not None:
            _check_name(durable_prefix, "durable prefix")
        servers = [url] if isinstance(url, str) else list(url)
        shown = ", ".join(servers)

        async def on_error(exc: Exception) -> None:
            if isinstance(exc, OSError | TimeoutError | nats.errors.UnexpectedEOF):
                logger.debug("NATS connection error (%s): %s", shown, exc)
            else:
                logger.warning("NATS error (%s): %r", shown, exc)

        nc = Client()

        async def on_disconnected() -> None:
            if nc.is_closed:  # nats-py also calls this on a deliberate close
                logger.debug("NATS connection to %s closed", shown)
            else:
                logger.warning("NATS disconnected from %s; reconnecting", shown)

        async def on_reconnected() -> None:
            logger.warning("NATS reconnected to %s", shown)

        # Given as Any: nats-py annotates these durations as int, floats work.
        options: dict[str, Any] = {
            "servers": servers,
            "name": name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": reconnect_wait,
            "connect_timeout": min(connect_timeout, 2.0),
            "pending_size": pending_size,
            "flush_timeout": 5.0,
            "drain_timeout": 5,
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
        }
        try:
            # With infinite reconnects nats-py retries the first connect forever too.
            await asyncio.wait_for(nc.connect(**options), connect_timeout)
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            await _close_quietly(nc)
            reason = str(exc) or type(exc).__name__
            raise BusUnavailableError(f"NATS not reachable at {shown}: {reason}") from exc
        js = nc.jetstream()
        try:
            await _ensure_stream(js, stream, _wire(namespace, RULE_TOPICS), max_msgs)
        except BaseException:
            await _close_quietly(nc)
            raise
        return cls(nc, js, url=shown, stream=stream, durable_prefix=durable_prefix,
                   namespace=namespace)

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def url(self) -> str:
        return self._url

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def is_connected(self) -> bool:
        """Connected to a server right now (False while reconnecting or closed)."""
        return bool(self._nc.is_connected)

    async def publish(self, topic: str, data: bytes) -> None:
        """Core NATS publish (captured by the stream for `ttp.rule.>`); never awaits an ack."""
        topic_tokens(topic)
        if not isinstance(data, bytes):
            raise TypeError(f"bus data must be bytes, not {type(data).__name__}")
        if self._closed:
            raise BusClosedError(f"cannot publish on {topic!r}: the bus is closed")
        try:
            await self._nc.publish(_wire(self._namespace, topic), data)
        except nats.errors.OutboundBufferLimitError as exc:
            raise BusUnavailableError(
                f"cannot publish on {topic!r}: NATS at {self._url} is unreachable and the "
                "reconnect buffer is full"
            ) from exc
        except _NATS_CLOSED as exc:
            raise BusClosedError(f"cannot publish on {topic!r}: the connection is closed") from exc
        except nats.errors.MaxPayloadError as exc:
            raise BusError(
                f"cannot publish on {topic!r}: {len(data)} bytes exceed the server's limit"
            ) from exc

    def durable_name(self, pattern: str, durable: str | None) -> str | None:
        """The consumer name a JetStream subscription to `pattern` would use."""
        if durable is not None:
            _check_name(durable, "durable name")
        prefix = self._durable_prefix
        if prefix is None:
            return durable
        if durable is None:
            durable = hashlib.sha256(pattern.encode()).hexdigest()[:16]
        return f"{prefix}_{durable}"

    async def subscribe(
        self,
        pattern: str,
        *,
        durable: str | None = None,
        deliver: Literal["new", "all"] = "new",
    ) -> NatsSubscription:
        """Registered when this returns; iterate for messages, `aclose()` to stop.

        Within `ttp.rule.>`: a JetStream consumer; `deliver="all"` starts at the
        oldest retained message, `"new"` after the last one; an existing durable
        consumer resumes where it left off (`deliver` applies only at its creation).
        Elsewhere: a core NATS subscription (`durable` and `deliver="all"` refused).
        """
        validate_pattern(pattern)
        if deliver not in ("new", "all"):
            raise ValueError(f"deliver must be 'new' or 'all', not {deliver!r}")
        if self._closed:
            raise BusClosedError(f"cannot subscribe to {pattern!r}: the bus is closed")
        if not _is_stream_pattern(pattern):
            if durable is not None or deliver != "new":
                raise ValueError(
                    f"pattern {pattern!r} is outside {RULE_TOPICS!r}: nothing is retained "
                    "for it, so durable= and deliver='all' do not apply"
                )
            try:
                sub = await self._nc.subscribe(_wire(self._namespace, pattern))
            except _NATS_CLOSED as exc:
                raise BusClosedError(f"cannot subscribe to {pattern!r}: connection closed") from exc
            return self._track(sub, pattern, jetstream=False, durable=None)

        name = self.durable_name(pattern, durable)
        policy = DeliverPolicy.ALL if deliver == "all" else DeliverPolicy.NEW
        try:
            if name is not None:
                await self._check_durable(name, _wire(self._namespace, pattern))
            js_sub = await self._js.subscribe(
                _wire(self._namespace, pattern),
                stream=self._stream,
                durable=name,
                deliver_policy=policy,
                manual_ack=True,
                # An ephemeral consumer outlives a reconnection shorter than this
                # (the server's default is 5 s); a durable one never expires.
                inactive_threshold=None if name is not None else EPHEMERAL_INACTIVE_THRESHOLD,
            )
        except _NATS_CLOSED as exc:
            raise BusClosedError(f"cannot subscribe to {pattern!r}: connection closed") from exc
        except _NATS_UNAVAILABLE as exc:
            raise BusUnavailableError(
                f"cannot subscribe to {pattern!r}: JetStream at {self._url} did not answer"
            ) from exc
        except nats.errors.Error as exc:
            raise BusError(f"cannot subscribe to {pattern!r} (consumer {name}): {exc}") from exc
        return self._track(js_sub, pattern, jetstream=True, durable=name)

    async def _check_durable(self, name: str, pattern: str) -> None:
        try:
            info = await self._js.consumer_info(self._stream, name)
        except nats.js.errors.NotFoundError:
            return
        config = info.config
        filters = list(config.filter_subjects or []) or [
            config.filter_subject or _wire(self._namespace, RULE_TOPICS)]
        if filters != [pattern]:
            raise BusError(
                f"durable consumer {name!r} of stream {self._stream!r} follows "
                f"{', '.join(filters)}, not {pattern!r}; use another durable name"
            )

    def _track(
        self, sub: Subscription, pattern: str, *, jetstream: bool, durable: str | None
    ) -> NatsSubscription:
        wrapper = NatsSubscription(
            sub, pattern, jetstream=jetstream, durable=durable, tasks=self._tasks,
            namespace=self._namespace,
        )
        self._subscriptions.add(wrapper)
        return wrapper

    async def close(self) -> None:
        """Close every subscription, flush buffered publishes, close the connection."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc.is_connected:
            try:
                await self._nc.drain()
                return
            except nats.errors.Error as exc:
                logger.debug("NATS drain failed, closing: %s", exc)
        await _close_quietly(self._nc)


async def _close_quietly(nc: Client) -> None:
    try:
        await nc.close()
    except (nats.errors.Error, OSError, AssertionError) as exc:
        logger.debug("NATS close: %r", exc)


def _wire(namespace: str | None, topic: str) -> str:
    """The subject `topic` travels as."""
    return topic if namespace is None else f"{namespace}.{topic}"


async def _ensure_stream(js: JetStreamContext, stream: str, captured: str = RULE_TOPICS,
                         max_msgs: int | None = None) -> None:
    """Create `stream` capturing `captured` (`ttp.rule.>`, maybe namespaced), or add that
    subject to an existing one."""
    try:
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(StreamConfig(
                    name=stream, subjects=[captured], max_msgs=max_msgs))
                logger.info("created JetStream stream %s for %s", stream, captured)
                return
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:  # else: created concurrently
                    raise
            info = await js.stream_info(stream)
        config = info.config
        subjects = list(config.subjects or [])
        if any(_covers_quietly(subject, captured) for subject in subjects):
            return
        config.subjects = [*subjects, captured]
        await js.update_stream(config)
        logger.info("added %s to JetStream stream %s", captured, stream)
    except _NATS_UNAVAILABLE as exc:
        raise BusUnavailableError(
            f"JetStream did not answer while ensuring stream {stream!r} "
            f"(is the server started with JetStream enabled?): {exc!r}"
        ) from exc
    except nats.js.errors.APIError as exc:
        raise BusError(
            f"cannot create or update JetStream stream {stream!r} for {captured!r}: "
            f"{exc.description} (error {exc.err_code})"
        ) from exc


def _covers_quietly(outer: str, inner: str) -> bool:
    try:
        return pattern_covers(outer, inner)
    except ValueError:  # a subject our validation refuses, e.g. with odd characters
        return False
