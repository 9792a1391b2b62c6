"""The JVM's fault handlers come back after Python code replaced them (see dagfoundry.cdc.jvm_signals).

Run in a child process: the module records process-wide state, and the integration tests start
the real JVM in this pytest process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import ctypes, signal
    from dagfoundry.cdc import jvm_signals

    def handler_address(signum):
        buffer = ctypes.create_string_buffer(512)
        assert ctypes.CDLL(None).sigaction(signum, None, buffer) == 0
        return bytes(buffer[:8])

    signal.signal(signal.SIGFPE, signal.SIG_IGN)  # stands for "the JVM's handler"
    jvm_signals.remember_jvm_handlers()
    installed = {s: handler_address(s) for s in jvm_signals.JVM_SIGNALS}

    signal.signal(signal.SIGSEGV, lambda *_: None)  # what Airflow's DAG importer does
    signal.signal(signal.SIGFPE, lambda *_: None)
    assert handler_address(signal.SIGSEGV) != installed[signal.SIGSEGV]
    assert handler_address(signal.SIGFPE) != installed[signal.SIGFPE]

    jvm_signals.restore_jvm_handlers()
    assert {s: handler_address(s) for s in jvm_signals.JVM_SIGNALS} == installed
    print("restored")
    """
)


def test_restore_puts_back_the_handlers_recorded_after_jvm_start():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "restored"


def test_restore_without_recorded_handlers_changes_nothing():
    child = textwrap.dedent(
        """
        import signal
        from dagfoundry.cdc import jvm_signals
        marker = lambda *_: None
        signal.signal(signal.SIGSEGV, marker)
        jvm_signals.restore_jvm_handlers()
        assert signal.getsignal(signal.SIGSEGV) is marker
        print("unchanged")
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unchanged"
