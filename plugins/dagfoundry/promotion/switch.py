"""Move the champion alias with check-and-set, keep the previous champion, roll back.

MLflow's registry has no compare-and-set on aliases. The switch builds one from two parts:

1. **A lock** every dagfoundry writer of a model takes: creating the registered model
   ``<model>__promotion_lock`` succeeds for exactly one caller (the registry's unique name
   constraint) and deleting it releases the lock. A lock older than ``stale_after`` (its holder
   died) is broken, with a log line.
2. **Check, set, verify** under the lock: the champion alias is re-read immediately before
   moving and must still be the version the evaluation compared against; after moving, it is
   read again and must be the new version.

3. **Intent, then history**: the entry is recorded as the model's pending intent before the
   aliases move and appended to the history after. Every holder of the lock first runs
   :func:`reconcile`, so a switch whose process died in between still gets its entry, and
   the history stays one chain from the first champion to the current one.

Residual race (documented in ``docs/model-promotion.md``): a writer that does not take the
lock (a person in the MLflow UI, a script) and moves the alias between the re-read and the
set is overwritten; the verify step catches a move after the set, not one in between.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagfoundry.errors import PromotionError
from dagfoundry.promotion import audit

if TYPE_CHECKING:
    from dagfoundry.specs.model_promotion import AliasesSpec

log = logging.getLogger(__name__)

LOCK_SUFFIX = "__promotion_lock"
LOCK_HOLDER = audit.PROMOTION_PREFIX + "lock_holder"
LOCK_SINCE = audit.PROMOTION_PREFIX + "lock_since"

#: A test seam: called with a point name (``locked``, ``switched``: aliases moved, history not yet
#: written) inside the switch; None in production.
Hook = Callable[[str], None] | None


def alias_version(client: Any, model: str, alias: str) -> str | None:
    """Return the version an alias points to, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


@contextmanager
def registry_lock(client: Any, model: str, holder: str, *, wait: dt.timedelta = dt.timedelta(minutes=2),
                  stale_after: dt.timedelta = dt.timedelta(minutes=10)) -> Iterator[None]:
    """Hold the promotion lock of ``model`` for the ``with`` block.

    :param holder: who holds it (the DAG run), shown on the lock's tags
    :raises PromotionError: the lock stayed taken for ``wait``
    """
    from mlflow.exceptions import MlflowException

    name = model + LOCK_SUFFIX
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            client.create_registered_model(
                name, tags={LOCK_HOLDER: holder, LOCK_SINCE: audit.now_text()},
                description=f"Lock of dagfoundry promotions of {model!r}; exists only while one runs.",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _break_if_stale(client, name, stale_after)
        if time.monotonic() > deadline:
            raise PromotionError(f"the promotion lock {name!r} stayed taken for {wait}; "
                                 f"holder: {_lock_tags(client, name)}")
        time.sleep(0.05)
    try:
        yield
    finally:
        client.delete_registered_model(name)


def _lock_tags(client: Any, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).tags)
    except MlflowException:
        return {}


def _break_if_stale(client: Any, name: str, stale_after: dt.timedelta) -> None:
    from mlflow.exceptions import MlflowException

    since = _lock_tags(client, name).get(LOCK_SINCE)
    if since and dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(since) > stale_after:
        log.warning("breaking the stale promotion lock %s (taken %s)", name, since)
        try:
            client.delete_registered_model(name)
        except MlflowException:
            pass


def promote(client: Any, model: str, aliases: AliasesSpec, challenger: str, expected_champion: str | None,
            entry: dict[str, Any], hook: Hook = None) -> dict[str, Any]:
    """Make ``challenger`` the champion if the champion is still ``expected_champion``.

    :param entry: the audit record's content (DAG run, approver, metrics); completed and appended
    :return: the history entry written
    :raises PromotionError: the champion moved since the evaluation began (nothing was changed),
        or it moved during the switch (reported, the history says what this run did)
    """
    with registry_lock(client, model, holder=str(entry.get("dag_run"))):
        if hook:
            hook("locked")
        reconcile(client, model, aliases, detected_by=str(entry.get("dag_run")))
        current = alias_version(client, model, aliases.champion)
        if current != expected_champion:
            raise PromotionError(
                f"{model}: alias {aliases.champion!r} moved since the evaluation began (expected version "
                f"{expected_champion}, found {current}); nothing was changed, evaluate again"
            )
        record = {**entry, "action": "promote", "at": audit.now_text(), "champion_from": current,
                  "champion_to": challenger, "previous_champion": current}
        audit.begin_switch(client, model, record)
        if current is not None:
            client.set_registered_model_alias(model, aliases.previous_champion, current)
        client.set_registered_model_alias(model, aliases.champion, challenger)
        if hook:
            hook("switched")
        seq = audit.append_history(client, model, record)
        audit.end_switch(client, model)
        audit.tag_version(client, model, challenger, {
            audit.PROMOTED_AT: record["at"], audit.DAG_RUN: str(entry.get("dag_run")),
            audit.APPROVED_BY: str(entry.get("approved_by")), audit.REPLACED: str(current),
            audit.HISTORY_ENTRY: str(seq),
        })
        if current is not None:
            audit.tag_version(client, model, current, {audit.REPLACED_BY: challenger,
                                                       audit.REPLACED_AT: record["at"]})
        _verify(client, model, aliases.champion, challenger)
        return {**record, "seq": seq}


def rollback(client: Any, model: str, aliases: AliasesSpec, expected_champion: str | None,
             entry: dict[str, Any], hook: Hook = None) -> dict[str, Any]:
    """Restore ``previous_champion`` as champion (if the champion is still ``expected_champion``).

    The ``previous_champion`` alias is removed: it names one version to go back to, once.

    :return: the history entry written
    :raises PromotionError: there is no previous champion to restore, or the champion moved
    """
    with registry_lock(client, model, holder=str(entry.get("dag_run"))):
        if hook:
            hook("locked")
        reconcile(client, model, aliases, detected_by=str(entry.get("dag_run")))
        current = alias_version(client, model, aliases.champion)
        previous = alias_version(client, model, aliases.previous_champion)
        if current != expected_champion:
            raise PromotionError(
                f"{model}: alias {aliases.champion!r} moved since the rollback began (expected version "
                f"{expected_champion}, found {current}); nothing was changed"
            )
        if previous is None:
            raise PromotionError(
                f"{model}: nothing to roll back to: alias {aliases.previous_champion!r} is not set "
                f"(champion is {current}); a rollback restores one previous champion once"
            )
        record = {**entry, "action": "rollback", "at": audit.now_text(), "champion_from": current,
                  "champion_to": previous, "previous_champion": None}
        audit.begin_switch(client, model, record)
        client.set_registered_model_alias(model, aliases.champion, previous)
        client.delete_registered_model_alias(model, aliases.previous_champion)
        if hook:
            hook("switched")
        seq = audit.append_history(client, model, record)
        audit.end_switch(client, model)
        audit.tag_version(client, model, previous, {audit.RESTORED_AT: record["at"], audit.HISTORY_ENTRY: str(seq)})
        if current is not None:
            audit.tag_version(client, model, current, {audit.ROLLED_BACK_AT: record["at"]})
        _verify(client, model, aliases.champion, previous)
        return {**record, "seq": seq}


def reconcile(client: Any, model: str, aliases: AliasesSpec, detected_by: str) -> dict[str, Any] | None:
    """Make the history end at the current champion again; call it holding the lock.

    - An intent whose aliases moved but whose entry is missing (the holder died in between):
      its entry is appended with ``recovered: true``, ``detected_at`` and ``detected_by``, and
      ``previous_champion`` is set as the intent says.
    - An intent whose switch never happened: discarded (``previous_champion`` restored if the
      dead holder had already moved it); an intent whose entry was written: removed.
    - No intent, but the champion is not where the last entry left it (moved by a writer
      outside the lock): an entry ``action: recovered`` from the recorded to the current
      champion. Without any entry yet, a champion set outside dagfoundry is left unrecorded.

    :param detected_by: the DAG run that found the gap
    :return: the entry appended (with ``seq``), or None
    """
    registered = client.get_registered_model(model)
    history, pending = audit.history_of(registered), audit.pending_of(registered)
    last = history[-1] if history else None
    recorded = last["champion_to"] if last else None
    current = alias_version(client, model, aliases.champion)
    found = {"recovered": True, "detected_at": audit.now_text(), "detected_by": detected_by}
    record: dict[str, Any] | None = None
    if pending is not None:
        if last is not None and {k: v for k, v in last.items() if k != "seq"} == pending:
            pass
        elif current == pending["champion_to"] and current != recorded:
            record = {**pending, **found}
            _set_or_delete(client, model, aliases.previous_champion, pending["previous_champion"])
        else:
            log.warning("%s: discarding the intent of a switch that never happened: %s", model, pending)
            said = last["previous_champion"] if last else None
            if alias_version(client, model, aliases.previous_champion) == pending["champion_from"] != said:
                _set_or_delete(client, model, aliases.previous_champion, said)
    if record is None and last is not None and current != recorded:
        record = {"action": "recovered", "at": found["detected_at"], "champion_from": recorded, "champion_to": current,
                  "previous_champion": alias_version(client, model, aliases.previous_champion),
                  "cause": f"alias {aliases.champion!r} moved outside the promotion lock", **found}
    seq = audit.append_history(client, model, record) if record is not None else None
    if pending is not None:
        audit.end_switch(client, model)
    if record is None:
        return None
    if current is not None:
        audit.tag_version(client, model, current, {audit.HISTORY_ENTRY: str(seq)})
    log.warning("%s: the history missed a switch of %r (v%s -> v%s); recovered as entry %s", model,
                aliases.champion, record["champion_from"], record["champion_to"], seq)
    return {**record, "seq": seq}


def _set_or_delete(client: Any, model: str, alias: str, version: str | None) -> None:
    if version is not None:
        client.set_registered_model_alias(model, alias, version)
    elif alias_version(client, model, alias) is not None:
        client.delete_registered_model_alias(model, alias)


def _verify(client: Any, model: str, alias: str, version: str) -> None:
    now = alias_version(client, model, alias)
    if now != version:
        raise PromotionError(
            f"{model}: alias {alias!r} is {now} right after this run set it to {version}: a writer outside "
            "the promotion lock moved it; the history records this run's switch, check the registry"
        )
