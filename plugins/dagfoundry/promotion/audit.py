"""Audit records: ``dagfoundry.promotion.*`` tags on model versions and the model's history.

MLflow keeps no history of aliases, so the kind keeps one: an append-only sequence of
registered-model tags ``dagfoundry.promotion.history.000001``, ``...000002``, each a JSON
entry (when, what, from which version to which, the DAG run, who approved, the metrics). A
new entry takes the next number under the promotion lock (:mod:`dagfoundry.promotion.switch`)
and existing numbers are never written again. Tags are shown in the MLflow UI and returned
by ``MlflowClient.get_registered_model``; :func:`read_history` returns the entries in order.

A switch first records its entry as the model's ``dagfoundry.promotion.pending`` tag (the
intent), then moves the aliases, appends the entry and removes the intent. A process killed in
between leaves the intent for the next holder of the lock to complete
(:func:`dagfoundry.promotion.switch.reconcile`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from dagfoundry.errors import PromotionError
from dagfoundry.models.registry_tags import PREFIX

PROMOTION_PREFIX = PREFIX + "promotion."
HISTORY_PREFIX = PROMOTION_PREFIX + "history."
#: registered-model tag holding the entry of a switch in progress
PENDING = PROMOTION_PREFIX + "pending"

#: tags on the challenger after each evaluation
DECISION = PROMOTION_PREFIX + "decision"
REASON = PROMOTION_PREFIX + "reason"
EVALUATED_AT = PROMOTION_PREFIX + "evaluated_at"
EVALUATION = PROMOTION_PREFIX + "evaluation"
HOLDOUT_DIGEST = PROMOTION_PREFIX + "holdout_digest"
CHART = PROMOTION_PREFIX + "chart"
DAG_RUN = PROMOTION_PREFIX + "dag_run"
#: tags written when aliases move
PROMOTED_AT = PROMOTION_PREFIX + "promoted_at"
APPROVED_BY = PROMOTION_PREFIX + "approved_by"
REPLACED = PROMOTION_PREFIX + "replaced"
REPLACED_BY = PROMOTION_PREFIX + "replaced_by"
REPLACED_AT = PROMOTION_PREFIX + "replaced_at"
ROLLED_BACK_AT = PROMOTION_PREFIX + "rolled_back_at"
RESTORED_AT = PROMOTION_PREFIX + "restored_at"
HISTORY_ENTRY = PROMOTION_PREFIX + "history_entry"

#: MLflow's SQL stores keep a registered-model tag in VARCHAR(5000) (model version tags are TEXT):
#: a history entry or intent longer than this would fail on PostgreSQL or MySQL.
REGISTERED_MODEL_TAG_LIMIT = 5000
#: Characters of JSON the gate results may take in an entry; the rest of an entry stays far below.
GATES_BUDGET = 2500
#: Key counting the passed gates that did not fit in :data:`GATES_BUDGET`.
MORE_PASSED = "+passed"


def now_text() -> str:
    """Return the current UTC time as ISO 8601 (what every audit record uses)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def compact_gates(gates: list[dict[str, Any]], budget: int = GATES_BUDGET) -> dict[str, Any]:
    """Return each gate's result as ``{gate: [passed, value, threshold]}`` (6 significant digits).

    Failed gates are always listed; passed gates while the JSON stays within ``budget``
    characters, the others counted under ``"+passed"``. The full results with their details
    are in the promotion run's ``promotion/decision.json``.

    :param gates: :meth:`GateResult.as_dict` values, in the gates' order
    """
    def short(number: float | None) -> float | None:
        return None if number is None else float(f"{number:.6g}")

    results: dict[str, Any] = {}
    skipped = 0
    for gate in sorted(gates, key=lambda g: bool(g["passed"])):  # failed first
        result = [bool(gate["passed"]), short(gate["value"]), short(gate["threshold"])]
        if gate["passed"] and len(json.dumps({**results, gate["gate"]: result, MORE_PASSED: 0})) > budget:
            skipped += 1
            continue
        results[gate["gate"]] = result
    if skipped:
        results[MORE_PASSED] = skipped
    return results


def history_key(seq: int) -> str:
    """Return the registered-model tag of history entry ``seq`` (zero-padded, so tags sort)."""
    return f"{HISTORY_PREFIX}{seq:06d}"


def read_history(client: Any, model: str) -> list[dict[str, Any]]:
    """Return the model's promotion history, oldest first."""
    return history_of(client.get_registered_model(model))


def history_of(registered: Any) -> list[dict[str, Any]]:
    """Return the history held in the tags of a ``RegisteredModel``, oldest first."""
    entries = [json.loads(value) for key, value in registered.tags.items() if key.startswith(HISTORY_PREFIX)]
    return sorted(entries, key=lambda entry: entry["seq"])


def pending_of(registered: Any) -> dict[str, Any] | None:
    """Return the entry of the switch a dead holder of the lock left unfinished, if any."""
    value = registered.tags.get(PENDING)
    return json.loads(value) if value else None


def begin_switch(client: Any, model: str, entry: dict[str, Any]) -> None:
    """Record ``entry`` as the intent of the switch about to move the aliases; call it holding the lock.

    :raises PromotionError: the entry would not fit in a registered-model tag (nothing was changed)
    """
    text = json.dumps(entry, sort_keys=True)
    if len(text) + len('"seq": 999999, ') > REGISTERED_MODEL_TAG_LIMIT:
        raise PromotionError(f"{model}: the history entry has {len(text)} characters, more than a registered-model "
                             f"tag holds ({REGISTERED_MODEL_TAG_LIMIT}); nothing was changed")
    client.set_registered_model_tag(model, PENDING, text)


def end_switch(client: Any, model: str) -> None:
    """Remove the intent once its entry is in the history (or it is discarded)."""
    client.delete_registered_model_tag(model, PENDING)


def append_history(client: Any, model: str, entry: dict[str, Any]) -> int:
    """Append ``entry`` to the model's history and return its number; call it holding the lock."""
    registered = client.get_registered_model(model)
    taken = [int(key[len(HISTORY_PREFIX):]) for key in registered.tags if key.startswith(HISTORY_PREFIX)]
    seq = max(taken, default=0) + 1
    client.set_registered_model_tag(model, history_key(seq), json.dumps({"seq": seq, **entry}, sort_keys=True))
    return seq


def tag_version(client: Any, model: str, version: str, values: dict[str, Any]) -> None:
    """Set ``dagfoundry.promotion.*`` tags on one version (non-strings as JSON)."""
    for key, value in sorted(values.items()):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        client.set_model_version_tag(model, version, key, text)
