"""The committed JSON Schemas reject what lint rejects (where JSON Schema can say it) and accept the examples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from dagfoundry.errors import SpecErrors
from dagfoundry.specs.loading import SpecLoader

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "fixtures" / "bad_specs"
#: Corpus files whose mistake a JSON Schema can express.
SCHEMA_CATCHES = [
    "bad_conn_id",
    "bad_cron_fields",
    "bad_mode",
    "bad_preset",
    "bad_retry_delay",
    "cdc_parallel_runs",
    "feature_misspelt_key",
    "feature_unknown_function",
    "feature_window_days_unit",
    "invalid_name",
    "misspelt_key",
    "negative_retries",
    "table_name_with_sql",
    "unknown_param",
    "wrong_param_type",
    "zero_max_events",
]


class _EditorLoader(yaml.SafeLoader):
    """YAML as editors give it to a JSON Schema: dates stay strings."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", SCHEMA_CATCHES)
def test_a_bad_spec_fails_both_lint_and_its_json_schema(name):
    path = CORPUS / f"{name}.yaml"
    with pytest.raises(SpecErrors):
        SpecLoader(CORPUS, environ={}).load_file(path)
    data = yaml.load(path.read_text(), Loader=_EditorLoader)
    assert list(_validator(data["kind"]).iter_errors(data)), f"{name}: the schema accepts what lint refuses"


EXAMPLES = sorted(p for p in (ROOT / "dag_configs").rglob("*.yaml") if p.name != "defaults.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_satisfy_their_json_schema(path):
    data = yaml.load(path.read_text(), Loader=_EditorLoader)
    errors = [e.message for e in _validator(data["kind"]).iter_errors(data)]
    assert errors == []


def test_schemas_write_durations_as_specs_do_and_bound_runs_as_lint_does():
    cdc = json.loads((ROOT / "schemas" / "cdc_ingestion.schema.json").read_text())
    features = json.loads((ROOT / "schemas" / "feature_backfill.schema.json").read_text())
    assert cdc["properties"]["retry_delay"]["default"] == "5m"
    assert cdc["$defs"]["CaptureSpec"]["properties"]["max_duration"]["default"] == "15m"
    assert cdc["properties"]["max_active_runs"]["maximum"] == 1
    assert features["properties"]["max_active_runs"]["maximum"] == 64
    assert sorted(cdc["properties"]["params"]["properties"]) == ["action", "tables"]
