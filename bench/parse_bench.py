"""Parse-time benchmark: dagfoundry against hand-written DAG files and dag-factory.

For N specs (100 and 1,000 by default) of a five-task chain, each measurement runs in a
fresh Python process and times only the DagBag fill (importing Airflow itself, the same
~1.2 s for all three, is printed apart):

- dagfoundry: ``dags/`` over N generated YAML specs (both entry modules: DAGs and errors);
- worker: one DAG's parse with the parsing context set, as a worker does before a task;
- floor: N hand-written Python DAG files building the same DAGs (same operators, tasks,
  dependencies, schedule, default args);
- dag-factory: the same DAGs as dag-factory YAML and its loader. dag-factory is not a runtime
  dependency (it registers an Airflow plugin in every component): on first use this script
  installs ``bench/requirements.txt`` into ``.bench-deps/`` and only the dag-factory runs see it.

Run: ``.venv/bin/python bench/parse_bench.py [--sizes 100 1000] [--repeat 3]`` (or ``make bench``).
Targets: at most 0.4x dag-factory and 1.5x the floor at 1,000 specs; worker parse <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DEPS = ROOT / ".bench-deps"
STEPS = ["extract", "validate", "transform", "load", "publish"]

_TIMER = """
import json, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "parse": t2 - t1, "dags": len(bag.dags), "errors": len(bag.import_errors)}))
"""


def write_dagfoundry_specs(folder: Path, count: int) -> None:
    for index in range(count):
        (folder / f"spec_{index:04d}.yaml").write_text(
            textwrap.dedent(
                f"""\
                kind: test_chain
                name: spec_{index:04d}
                description: Benchmark pipeline {index}.
                owner: bench
                schedule: "0 3 * * *"
                retries: 2
                steps: [{", ".join(STEPS)}]
                """
            )
        )


def write_python_dags(folder: Path, count: int) -> None:
    for index in range(count):
        tasks = "\n".join(f'    {s} = EmptyOperator(task_id="{s}")' for s in STEPS)
        (folder / f"dag_{index:04d}.py").write_text(
            textwrap.dedent(
                f"""\
                from datetime import datetime, timedelta, timezone
                from airflow.sdk import DAG, CronTriggerTimetable, chain
                from airflow.providers.standard.operators.empty import EmptyOperator

                with DAG(
                    dag_id="spec_{index:04d}",
                    description="Benchmark pipeline {index}.",
                    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
                    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
                    catchup=False,
                    max_active_runs=1,
                    tags=["bench", "dagfoundry", "test_chain"],
                    default_args={{"owner": "bench", "retries": 2, "retry_delay": timedelta(minutes=5)}},
                ):
                """
            )
            + tasks
            + f"\n    chain({', '.join(STEPS)})\n"
        )


def write_dag_factory(folder: Path, count: int) -> None:
    configs = folder / "configs"
    configs.mkdir()
    for index in range(count):
        tasks = "".join(
            f"    - task_id: {step}\n"
            f"      operator: airflow.providers.standard.operators.empty.EmptyOperator\n"
            + (f"      dependencies: [{STEPS[i - 1]}]\n" if i else "")
            for i, step in enumerate(STEPS)
        )
        (configs / f"spec_{index:04d}.yml").write_text(
            f"spec_{index:04d}:\n"
            f"  description: Benchmark pipeline {index}.\n"
            f"  schedule: '0 3 * * *'\n"
            f"  catchup: false\n"
            f"  max_active_runs: 1\n"
            f"  tags: [bench, dagfoundry, test_chain]\n"
            f"  default_args:\n    owner: bench\n    retries: 2\n    start_date: 2025-01-01\n"
            f"  tasks:\n{tasks}"
        )
    (folder / "load_dag_factory.py").write_text(
        "# airflow DAG loader for dag-factory\n"
        "import dagfactory\n"
        f"dagfactory.load_yaml_dags(globals_dict=globals(), dags_folder={str(configs)!r})\n"
    )


def time_dagbag(dag_folder: Path, repeat: int, **env: str) -> dict:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        "DAGFOUNDRY_KIND_MODULES": "tests.fixtures.chain_kind",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **env,
    }
    runs = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", _TIMER, str(dag_folder)], env=environment, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"parse of {dag_folder} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["parse"])
    best["median_parse"] = statistics.median(r["parse"] for r in runs)
    return best


def install_bench_deps() -> None:
    """Install the benchmark-only packages into ``.bench-deps/`` once (pip --target, no deps)."""
    if (BENCH_DEPS / "dagfactory").is_dir():
        return
    print(f"installing bench/requirements.txt into {BENCH_DEPS} (once)", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--target", str(BENCH_DEPS), "-r", str(ROOT / "bench" / "requirements.txt")],
        check=True,
    )


def bench_size(count: int, repeat: int, work: Path) -> dict:
    specs, python_dags, factory = (work / f"{name}_{count}" for name in ("specs", "python", "factory"))
    for folder in (specs, python_dags, factory):
        folder.mkdir()
    write_dagfoundry_specs(specs, count)
    write_python_dags(python_dags, count)
    airflow_home = work / "airflow_home"
    common = {"AIRFLOW_HOME": str(airflow_home)}
    ours = time_dagbag(ROOT / "dags", repeat, DAGFOUNDRY_CONFIG_DIR=str(specs), **common)
    assert ours["dags"] == count and ours["errors"] == 0, ours
    middle = f"spec_{count // 2:04d}"
    worker = time_dagbag(
        ROOT / "dags" / "dagfoundry_dags.py",
        repeat,
        DAGFOUNDRY_CONFIG_DIR=str(specs),
        _AIRFLOW_PARSING_CONTEXT_DAG_ID=middle,
        **common,
    )
    assert worker["dags"] == 1, worker
    floor = time_dagbag(python_dags, repeat, **common)
    assert floor["dags"] == count, floor
    result = {"count": count, "ours": ours, "worker": worker, "floor": floor, "dag_factory": None}
    write_dag_factory(factory, count)
    bench_path = os.pathsep.join([str(BENCH_DEPS), str(ROOT / "plugins"), str(ROOT)])
    result["dag_factory"] = time_dagbag(factory, repeat, PYTHONPATH=bench_path, **common)
    assert result["dag_factory"]["dags"] == count, result["dag_factory"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement; best is kept")
    args = parser.parse_args()
    install_bench_deps()
    print(f"parse benchmark on {os.cpu_count()} cores; best of {args.repeat} fresh processes; Airflow import excluded")
    with tempfile.TemporaryDirectory(prefix="dagfoundry-parse-bench-") as tmp:
        for count in args.sizes:
            r = bench_size(count, args.repeat, Path(tmp))
            ours, floor, factory = r["ours"]["parse"], r["floor"]["parse"], r["dag_factory"]
            print(f"\n{count} specs x {len(STEPS)} tasks (Airflow import {r['ours']['import']:.2f} s, not counted)")
            print(f"  dagfoundry full parse      {ours:7.3f} s")
            print(f"  worker, one DAG            {r['worker']['parse'] * 1000:7.1f} ms   (target <= 100 ms)")
            print(f"  hand-written Python floor  {floor:7.3f} s   ratio ours/floor {ours / floor:5.2f}x (target <= 1.5x)")
            f = factory["parse"]
            print(f"  dag-factory 1.1            {f:7.3f} s   ratio ours/dag-factory {ours / f:5.2f}x (target <= 0.4x)")


if __name__ == "__main__":
    main()
