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
                "evaluation": evaluation(second, first, {first: 0.7, second: 0.8})}
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
