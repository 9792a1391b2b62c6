"""Java callbacks of the embedded Debezium engine, implemented in Python with JPype.

Import this module only after the JVM started (``pydbzengine``'s ``ensure_jvm_started``).
pydbzengine's own consumer marks every record processed as soon as the handler returns,
which would let offsets be committed before the batch is landed; this consumer hands
records to the capture and leaves marking to it. The completion callback is what
pydbzengine lacks: Debezium reports connector failures only there.

:class:`RecordBatchReader` reads a whole batch with a few Java calls: a JPype call costs
microseconds, several per record were most of the capture's CPU time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import jpype


@jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
class DeferredCommitConsumer:
    """Pass each batch to ``on_batch(records, committer)``; never mark records itself."""

    def __init__(self, on_batch: Callable[[object, object], None]) -> None:
        self._on_batch = on_batch
        self.error: BaseException | None = None

    @jpype.JOverride
    def handleBatch(self, records, committer):  # noqa: N802 - Java interface
        try:
            self._on_batch(records, committer)
        except BaseException as exc:  # keep it for the capture thread; Java gets no Python error
            if self.error is None:
                self.error = exc

    @jpype.JOverride
    def supportsTombstoneEvents(self):  # noqa: N802 - Java interface
        return True


@jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
class CompletionRecorder:
    """Remember how the engine finished: success flag, message and Java error text."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.success: bool | None = None
        self.message = ""
        self.error_text = ""

    @jpype.JOverride
    def handle(self, success, message, error):
        self.success = bool(success)
        self.message = str(message) if message is not None else ""
        if error is not None:
            self.error_text = _describe_throwable(error)
        self.done.set()


@jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
class TaskStartRecorder:
    """Remember when the connector task started (the start of the idle clock)."""

    def __init__(self) -> None:
        self.task_started_at: float | None = None

    @jpype.JOverride
    def taskStarted(self):  # noqa: N802 - Java interface
        self.task_started_at = time.monotonic()


class RecordBatchReader:
    """Read a batch's destinations and values with one Java stream each, not per record.

    The per-record accessors become Java ``Function`` objects built from method handles
    (no Python callback per record); the values are joined in Java into one JSON array.
    """

    def __init__(self) -> None:
        handles = jpype.JClass("java.lang.invoke.MethodHandles")
        method_type = jpype.JClass("java.lang.invoke.MethodType")
        proxies = jpype.JClass("java.lang.invoke.MethodHandleProxies")
        function = jpype.JClass("java.util.function.Function")
        jobject, jstring = jpype.JClass("java.lang.Object"), jpype.JClass("java.lang.String")
        event = jpype.JClass("io.debezium.engine.ChangeEvent")
        lookup = handles.publicLookup()
        as_function = method_type.methodType(jobject, jobject)
        # String.valueOf turns a tombstone's null value into the JSON literal null.
        value = handles.filterReturnValue(
            lookup.findVirtual(event, "value", method_type.methodType(jobject)),
            lookup.findStatic(jstring, "valueOf", method_type.methodType(jstring, jobject)),
        )
        destination = lookup.findVirtual(event, "destination", method_type.methodType(jstring))
        self._value = proxies.asInterfaceInstance(function, value.asType(as_function))
        self._destination = proxies.asInterfaceInstance(function, destination.asType(as_function))
        self._collectors = jpype.JClass("java.util.stream.Collectors")
        self._utf8 = jpype.JClass("java.nio.charset.StandardCharsets").UTF_8

    def destinations(self, records) -> list[str]:
        """Return each record's destination (topic); topic names hold no newline."""
        joined = records.stream().map(self._destination).collect(self._collectors.joining("\n"))
        return str(joined).split("\n")

    def values_json(self, records) -> bytes:
        """Return the records' JSON values as one UTF-8 JSON array (``null`` for a tombstone)."""
        joined = records.stream().map(self._value).collect(self._collectors.joining(",", "[", "]"))
        # Encoded in Java and copied as bytes: several times cheaper than JPype's str().
        return bytes(joined.getBytes(self._utf8))

    @staticmethod
    def key_json(records, index: int) -> str | None:
        """Return one record's JSON key (needed for tombstones only)."""
        key = records.get(index).key()
        return None if key is None else str(key)


def build_engine(properties: dict[str, str], consumer, completion, connector_callback):
    """Build a Debezium JSON engine with our consumer and callbacks."""
    from pydbzengine.engine._jvm import EngineFormat, JDebeziumEngine, JProperties

    props = JProperties()
    for key, value in properties.items():
        props.setProperty(key, value)
    return (
        JDebeziumEngine.create(EngineFormat.JSON)
        .using(props)
        .using(completion)
        .using(connector_callback)
        .notifying(consumer)
        .build()
    )


def streaming_connected(source: str) -> bool | None:
    """Return whether the connector's streaming source is connected (JMX), None if unknown."""
    management = jpype.JClass("java.lang.management.ManagementFactory")
    object_name = jpype.JClass("javax.management.ObjectName")
    try:
        server = management.getPlatformMBeanServer()
        name = object_name(f"debezium.postgres:type=connector-metrics,context=streaming,server={source}")
        return bool(server.getAttribute(name, "Connected"))
    except Exception:
        return None


def _describe_throwable(error) -> str:
    parts = []
    seen = 0
    while error is not None and seen < 6:
        parts.append(f"{error.getClass().getName()}: {error.getMessage()}")
        error = error.getCause()
        seen += 1
    return " <- caused by ".join(parts)
