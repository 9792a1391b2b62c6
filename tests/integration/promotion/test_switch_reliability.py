"""The check-and-set switch against a real MLflow registry (SQLite): detection of a moved champion,
and a randomized run of promotion attempts with concurrent promoters."""

from __future__ import annotations

import random
import threading
import time

import pytest

pytestmark = pytest.mark.integration

ATTEMPTS = 200


def spec_of(load_spec):
    return load_spec("better")


def new_versions(client, model: str, count: int, folder) -> list[str]:
    """Create ``count`` bare model versions (the switch needs versions, not their files)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model)
    except MlflowException:
        pass
    return [str(client.create_model_version(model, source=str(folder)).version) for _ in range(count)]


def evaluation(version: str, champion: str | None, quality: dict[str, float]) -> dict:
    def side(v):
        return {"version": v, "metrics": {"roc_auc": quality[v], "log_loss": 1 - quality[v]}, "segments": {}}

    return {"challenger": side(version), "champion": side(champion) if champion else None,
            "holdout": {"digest": "sha256:same", "rows": 100, "source": "challenger_run"}}


def attempt(client, spec, model: str, version: str, quality: dict[str, float], between=None) -> str:
    """Evaluate ``version`` against the champion read now, then switch; return the outcome."""
    from dagfoundry.errors import PromotionError
    from dagfoundry.promotion.gates import apply_gates, failed
    from dagfoundry.promotion.switch import alias_version, promote

    expected = alias_version(client, model, "champion")
    if version == expected or failed(apply_gates(spec, evaluation(version, expected, quality))):
        return "refused"
    if between:
        between()
    try:
        promote(client, model, spec.aliases, version, expected,
                {"dag_run": f"attempt/{version}", "approved_by": "test",
                 "metrics": {"challenger": quality[version], "champion": quality.get(expected or "")}})
    except PromotionError:
        return "aborted"
    return "promoted"


def test_champion_moved_between_evaluation_and_switch_is_detected(registry, load_spec, tmp_path):
    from dagfoundry.errors import PromotionError
    from dagfoundry.promotion.audit import read_history
    from dagfoundry.promotion.steps import switch_step
    from dagfoundry.promotion.switch import alias_version

    spec = spec_of(load_spec)
    model = "m_moved"
    first, second, third = new_versions(registry, model, 3, tmp_path)
    registry.set_registered_model_alias(model, "champion", first)
    decision = {"model": model, "challenger": second, "expected_champion": first, "passed": True, "dry_run": False,
                "reason": "all gates passed", "dag_run": "test/moved", "chart_uri": "",
                "evaluation": evaluation(second, first, {first: 0.7, second: 0.8}),
                "gates": [{"gate": "improvement:roc_auc", "passed": True, "value": 0.8, "threshold": 0.7,
                           "detail": "roc_auc 0.8 vs champion 0.7"}]}
    # Another process promotes `third` after the evaluation read `first` as champion.
    mover = threading.Thread(target=registry.set_registered_model_alias, args=(model, "champion", third))
    mover.start()
    mover.join()
    from dagfoundry.models.tracking import local_default
    from dagfoundry.settings import lake_root

    with pytest.raises(PromotionError, match="moved since the evaluation began .*expected version 1, found 3"):
        switch_step(spec.model_copy(update={"registered_model": model}), local_default(lake_root()), decision, "test")
    assert alias_version(registry, model, "champion") == third
    assert alias_version(registry, model, "previous_champion") is None
    assert read_history(registry, model) == []


def test_randomized_promotions_with_concurrent_promoters_keep_every_invariant(registry, load_spec, tmp_path):
    from dagfoundry.promotion.audit import read_history
    from dagfoundry.promotion.switch import alias_version

    spec = spec_of(load_spec)
    model = "m_random"
    rng = random.Random(20261205)
    versions = new_versions(registry, model, ATTEMPTS + ATTEMPTS // 2, tmp_path)
    # Newer versions tend to be better, with noise: about half the attempts pass the gates.
    quality = {v: round(0.56 + 0.4 * i / len(versions) + rng.uniform(-0.03, 0.03), 4) for i, v in enumerate(versions)}
    pool = iter(versions)
    outcomes: dict[str, int] = {"promoted": 0, "refused": 0, "aborted": 0}
    concurrent = {"promoted": 0, "refused": 0, "aborted": 0}
    lock = threading.Lock()
    started = time.perf_counter()

    def rival() -> None:
        with lock:
            version = next(pool)
        outcome = attempt(registry, spec, model, version, quality)
        with lock:
            concurrent[outcome] += 1

    for _ in range(ATTEMPTS):
        with lock:
            version = next(pool)
        threads: list[threading.Thread] = []

        def between(threads: list[threading.Thread] = threads) -> None:
            thread = threading.Thread(target=rival)
            threads.append(thread)
            thread.start()
            if rng.random() < 0.5:
                thread.join()  # the rival finishes first: our champion is stale

        # in 60 % of the attempts that pass the gates a concurrent promotion starts between our evaluation and our switch
        outcome = attempt(registry, spec, model, version, quality, between if rng.random() < 0.6 else None)
        for thread in threads:
            thread.join()
        outcomes[outcome] += 1
    elapsed = time.perf_counter() - started

    history = read_history(registry, model)
    promotions = outcomes["promoted"] + concurrent["promoted"]
    # every change is in the history, as one chain of promotions
    assert len(history) == promotions
    assert [e["seq"] for e in history] == list(range(1, promotions + 1))
    for before, after in zip(history, history[1:], strict=False):
        assert after["champion_from"] == before["champion_to"], (before, after)
    # never a worse model promoted
    worse = [e for e in history if e["champion_from"] and quality[e["champion_to"]] < quality[e["champion_from"]]]
    assert worse == []
    # never a lost previous champion
    assert alias_version(registry, model, "champion") == history[-1]["champion_to"]
    assert alias_version(registry, model, "previous_champion") == history[-1]["champion_from"]
    assert all(e["previous_champion"] == e["champion_from"] for e in history)
    assert outcomes["aborted"] + concurrent["aborted"] > 0, "no concurrent move was ever detected"
    total = ATTEMPTS + sum(concurrent.values())
    print(f"\nreliability: {total} promotion attempts ({ATTEMPTS} + {sum(concurrent.values())} concurrent) in "
          f"{elapsed:.1f} s: promoted {promotions}, refused by gates {outcomes['refused'] + concurrent['refused']}, "
          f"aborted by check-and-set {outcomes['aborted'] + concurrent['aborted']}; worse promoted 0, "
          f"previous champion lost 0, changes missing from history 0")


#: Runs one promotion in a child process that is SIGKILLed right after the aliases moved,
#: before the history entry is written (the switch's ``switched`` point).
KILLED_SWITCH = """
import os, signal, sys
import mlflow
from dagfoundry.promotion.switch import promote
from dagfoundry.specs.model_promotion import AliasesSpec

uri, model, challenger, expected = sys.argv[1:]
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)

def die(point):
    if point == "switched":
        os.kill(os.getpid(), signal.SIGKILL)

promote(mlflow.MlflowClient(), model, AliasesSpec(), challenger, expected,
        {"dag_run": "promo/killed", "approved_by": "alice"}, die)
"""


def assert_one_chain(registry, model: str, history: list[dict]) -> None:
    from dagfoundry.promotion.switch import alias_version

    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert history[0]["champion_from"] is None
    for before, after in zip(history, history[1:], strict=False):
        assert after["champion_from"] == before["champion_to"], (before, after)
    assert alias_version(registry, model, "champion") == history[-1]["champion_to"]


def test_a_switch_killed_before_its_history_entry_is_recovered_by_the_next_promotion(registry, load_spec, tmp_path):
    import datetime as dt
    import os
    import signal
    import subprocess
    import sys

    import mlflow

    from dagfoundry.promotion import audit
    from dagfoundry.promotion.switch import LOCK_SINCE, LOCK_SUFFIX, alias_version, promote

    spec = spec_of(load_spec)
    model = "m_killed"
    first, second, third = new_versions(registry, model, 3, tmp_path)
    promote(registry, model, spec.aliases, first, None, {"dag_run": "promo/first", "approved_by": "test"})

    child = subprocess.run([sys.executable, "-c", KILLED_SWITCH, mlflow.get_tracking_uri(), model, second, first],
                           env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    # The kill left the switch without its entry, the intent, and the lock.
    assert alias_version(registry, model, "champion") == second
    assert [e["champion_to"] for e in audit.read_history(registry, model)] == [first]
    assert audit.PENDING in registry.get_registered_model(model).tags
    # The next run breaks the dead holder's lock once it is stale (as after 10 minutes).
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)).isoformat(timespec="seconds")
    registry.set_registered_model_tag(model + LOCK_SUFFIX, LOCK_SINCE, long_ago)

    done = promote(registry, model, spec.aliases, third, second, {"dag_run": "promo/next", "approved_by": "test"})

    history = audit.read_history(registry, model)
    assert [(e["champion_from"], e["champion_to"]) for e in history] == [(None, first), (first, second), (second, third)]
    recovered = history[1]
    assert recovered["recovered"] is True and recovered["detected_by"] == "promo/next"
    assert (recovered["action"], recovered["dag_run"], recovered["approved_by"]) == ("promote", "promo/killed", "alice")
    assert done["seq"] == 3 and not done.get("recovered")
    assert_one_chain(registry, model, history)
    assert alias_version(registry, model, "previous_champion") == second
    assert audit.PENDING not in registry.get_registered_model(model).tags
    assert registry.get_model_version(model, second).tags[audit.HISTORY_ENTRY] == "2"


def test_a_champion_moved_outside_the_lock_is_recorded_by_the_next_rollback(registry, load_spec, tmp_path):
    from dagfoundry.promotion import audit
    from dagfoundry.promotion.switch import alias_version, promote, rollback

    spec = spec_of(load_spec)
    model = "m_outside"
    first, second, third = new_versions(registry, model, 3, tmp_path)
    promote(registry, model, spec.aliases, first, None, {"dag_run": "promo/first", "approved_by": "test"})
    promote(registry, model, spec.aliases, second, first, {"dag_run": "promo/second", "approved_by": "test"})
    registry.set_registered_model_alias(model, "champion", third)  # a person in the MLflow UI

    rollback(registry, model, spec.aliases, third, {"dag_run": "promo/rollback", "approved_by": "bob"})

    history = audit.read_history(registry, model)
    assert [(e["action"], e["champion_from"], e["champion_to"]) for e in history] == [
        ("promote", None, first), ("promote", first, second), ("recovered", second, third), ("rollback", third, first)]
    assert history[2]["recovered"] is True and history[2]["detected_by"] == "promo/rollback"
    assert_one_chain(registry, model, history)
    assert alias_version(registry, model, "previous_champion") is None
