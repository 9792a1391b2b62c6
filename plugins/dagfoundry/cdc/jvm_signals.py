"""Keep the JVM's own fault handlers in place in a process that also parses DAG files.

HotSpot raises SIGSEGV on purpose, many times a second under load: safepoint polls read an
armed page, implicit null checks dereference address zero, and the JVM's handler resumes the
thread. Airflow's DAG importer installs a Python SIGSEGV handler each time it parses a file
(``airflow.dag_processing.importers.python_importer``). Where a process parses DAG files after
the embedded Debezium JVM started (``dag.test()`` re-parses the DAG folder before every run, and
a long-lived process may run several captures), that handler replaces the JVM's: the next
intended fault lands in Python's handler, which returns to the faulting instruction, so the
thread spins for ever while the JVM waits for it to reach a safepoint (the run hangs), or the
process dies with a segmentation fault.

:func:`remember_jvm_handlers` records the handlers as the JVM installed them, right after it
started; :func:`restore_jvm_handlers` puts them back before the capture calls into Java again.
Linux only, like the rest of the embedded capture.
"""

from __future__ import annotations

import ctypes
import signal

#: the signals HotSpot handles itself (and chains to earlier handlers for faults not its own)
JVM_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL)
# Treated as opaque bytes: larger than glibc's ``struct sigaction`` on every Linux ABI (152 on x86_64).
_SIGACTION_BYTES = 512

_saved: dict[int, ctypes.Array] = {}


def _sigaction(signum: int, new: ctypes.Array | None, old: ctypes.Array | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.sigaction(signum, new, old) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"sigaction({signal.Signals(signum).name}) failed")


def remember_jvm_handlers() -> None:
    """Record the current handlers of :data:`JVM_SIGNALS` as the JVM's (call right after it started)."""
    for signum in JVM_SIGNALS:
        buffer = ctypes.create_string_buffer(_SIGACTION_BYTES)
        _sigaction(signum, None, buffer)
        _saved[signum] = buffer


def restore_jvm_handlers() -> None:
    """Reinstall the handlers recorded by :func:`remember_jvm_handlers` (nothing if none were)."""
    for signum, buffer in _saved.items():
        _sigaction(signum, buffer, None)
