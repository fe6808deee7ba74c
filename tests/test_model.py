"""``flowtaskd validate``, ``graph`` and ``schema``, run as real processes (the installed
console script and ``python -m flowtaskd``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowtaskd.components.registry import registry
from flowtaskd.core.jsonschema import task_schema
from flowtaskd.core.render import render
from flowtaskd.tasks import load_pile

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "flowtaskd"
EXAMPLES = sorted(p for p in (REPO / "config" / "tasks").iterdir() if p.is_file())


def flowtaskd(*args: str, cwd: Path, module: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flowtaskd"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


GOOD = "name: good\nsteps:\n  - Command: {command: [echo, hi]}\n  - Dummy: {}\n"
BAD = "name: bad\nsteps:\n  - Command:\n      comand: [echo, hi]\n  - Dummy: {depends: nope}\n"
BAD_PROBLEMS = [
    "bad.yaml:3: steps[0].Command.command: field required",
    "bad.yaml:4: steps[0].Command.comand: unknown key (did you mean `command`?)",
    "bad.yaml:5: steps[1].Dummy.depends: depends on unknown step `nope` "
    "(nearest known ids: `Command_1`)",
]


def _steps(n: int) -> str:
    return "1 step" if n == 1 else f"{n} steps"


def test_the_examples_are_valid_and_in_every_format() -> None:
    assert {p.suffix for p in EXAMPLES} >= {".yaml", ".json", ".toml"}
    run = flowtaskd("validate", "config/tasks", cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"ok config/tasks/{p.name}: task {load_pile(p).name} ({_steps(len(load_pile(p)))})"
        for p in EXAMPLES
    ]
    assert run.stderr == f"{len(EXAMPLES)} valid, 0 invalid\n"


def test_the_examples_cover_what_the_issue_asks_for() -> None:
    piles = {p.name: load_pile(p) for p in EXAMPLES}
    plain = [
        n
        for n, pile in piles.items()
        if set(pile.task) <= {"name", "description", "comments", "events", "steps"}
        and all(
            not (set(next(iter(s.values())) or {}) & {"name", "depends"})
            for s in pile.task["steps"]
        )
    ]
    assert plain, "one example is in the plain upstream style"
    dag = [n for n, pile in piles.items() if pile.groups and len(pile.roots()) > 1]
    assert dag, "one example is a real DAG with parallel branches and a group"
    scheduled = {
        n: pile.definition.schedules for n, pile in piles.items() if pile.definition.schedules
    }
    assert list(scheduled.values()) in ([], [("0 6 * * *",)]), "at most one, daily"
    for pile in piles.values():
        for group in pile.groups.values():
            path = pile[group.parent].params["path"]
            assert (REPO / path).is_dir(), f"{path} exists (relative to the repository root)"


def test_validate_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    run = flowtaskd("validate", "good.yaml", "bad.yaml", "missing.json", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == "ok good.yaml: task good (2 steps)\n"
    assert run.stderr.splitlines() == [
        *BAD_PROBLEMS,
        "missing.json: no such file or folder",
        "1 valid, 2 invalid",
    ]


def test_validate_json(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    run = flowtaskd("validate", "--json", ".", cwd=tmp_path)
    assert run.returncode == 1 and run.stderr == ""
    doc = json.loads(run.stdout)
    assert doc["valid"] is False
    bad, good = doc["files"]
    assert good == {
        "file": "good.yaml",
        "valid": True,
        "task": "good",
        "steps": 2,
        "problems": [],
        "notes": [],
    }
    assert bad["file"] == "bad.yaml" and bad["valid"] is False
    assert bad["problems"][1] == {
        "message": "unknown key",
        "file": "bad.yaml",
        "line": 4,
        "path": "steps[0].Command.comand",
        "hint": "did you mean `command`?",
    }
    assert len(bad["problems"]) == 3
    (tmp_path / "bad.yaml").unlink()
    run = flowtaskd("validate", "--json", ".", cwd=tmp_path)
    assert run.returncode == 0 and json.loads(run.stdout)["valid"] is True


def test_validate_walks_folders(tmp_path: Path) -> None:
    for rel in ["a.yaml", "sub/b.YML", "sub/deeper/c.json", "d.toml"]:
        path = tmp_path / "tasks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            GOOD
            if path.suffix.lower() != ".json"
            else json.dumps({"name": "c", "steps": [{"Dummy": {}}]})
            if rel != "d.toml"
            else ""
        )
    (tmp_path / "tasks" / "d.toml").write_text('name = "d"\n[[steps]]\n[steps.Dummy]\n')
    for ignored in [".hidden.yaml", ".git/x.yaml", "notes.txt", "data.csv"]:
        path = tmp_path / "tasks" / ignored
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not a task")
    run = flowtaskd("validate", "tasks", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert [line.split(":")[0] for line in run.stdout.splitlines()] == [
        "ok tasks/a.yaml",
        "ok tasks/d.toml",
        "ok tasks/sub/b.YML",
        "ok tasks/sub/deeper/c.json",
    ]


def test_validate_with_nothing_to_check_exits_1(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = flowtaskd("validate", "empty", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == "flowtaskd: no task files found\n0 valid, 0 invalid\n"


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
def test_graph(fmt: str) -> None:
    example = REPO / "config" / "tasks" / "sales_report.yaml"
    run = flowtaskd("graph", str(example), "--format", fmt, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout == render(load_pile(example), fmt)
    assert "files" in run.stdout  # the group is shown


def test_graph_of_an_invalid_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    run = flowtaskd("graph", "bad.yaml", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [f"flowtaskd: {p}" for p in BAD_PROBLEMS]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    run = flowtaskd("graph", cwd=tmp_path)
    assert run.returncode == 2 and "FILE" in run.stderr
    run = flowtaskd("graph", "x.yaml", "--format", "svg", cwd=tmp_path)
    assert run.returncode == 2 and "invalid choice: 'svg'" in run.stderr


def test_schema_via_python_dash_m(tmp_path: Path) -> None:
    run = flowtaskd("schema", cwd=tmp_path, module=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == task_schema(registry())


UPSTREAM_STYLE = (
    "name: u\nsteps:\n  - Dummy: {message: a}\n  - Dummy: {message: b, depends: []}\n"
    "  - Dummy: {message: c}\n"
)


def test_validate_notes_where_the_dag_leaves_file_order(tmp_path: Path) -> None:
    (tmp_path / "u.yaml").write_text(UPSTREAM_STYLE)
    (tmp_path / "ordered.yaml").write_text(UPSTREAM_STYLE + "order: file\n")
    (tmp_path / "ours.yaml").write_text(UPSTREAM_STYLE + "max_active_steps: 2\n")
    run = flowtaskd("validate", ".", cwd=tmp_path)
    assert run.returncode == 0
    notes = [line for line in run.stdout.splitlines() if "note:" in line]
    tail = ", written above it, as `depends` allows; upstream runs steps in file order: add "
    tail += "`order: file` to do the same"
    assert notes == [
        "u.yaml:4: steps[1]: note: `Dummy_2` can start before `Dummy_1`" + tail,
        "u.yaml:5: steps[2]: note: `Dummy_3` can start before `Dummy_1`" + tail,
    ]


def test_upstream_report(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "name: a\nsteps:\n  - QueryToPandas: {query: q}\n  - TableOutput: {tablename: t}\n"
    )
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  - Dummy: {message: hi}\n")
    (tmp_path / "c.yaml").write_text(
        "name: c\nsteps:\n  - QueryToPandas: {query: q}\n  - Dummy: {mesage: x}\n"
    )
    (tmp_path / "d.yaml").write_text("name: d\nsteps:\n  - Frobnicate: {}\n")
    run = flowtaskd("validate", "--upstream-report", ".", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        "a.yaml: needs QueryToPandas, TableOutput (not shipped)",
        "b.yaml: runs",
        "c.yaml: error: c.yaml:4: steps[1].Dummy.mesage: unknown key (did you mean `message`?); "
        "also needs QueryToPandas",
        "d.yaml: unknown component Frobnicate (not upstream's either)",
        "1 of 4 run as written; 1 need components not shipped; 1 use unknown components; "
        "1 have errors",
        "components needed: QueryToPandas (2 files), TableOutput (1 file)",
        "a plugin adds a component: see README, 'Coming from flowtask'",
    ]
    doc = json.loads(flowtaskd("validate", "--upstream-report", "--json", ".", cwd=tmp_path).stdout)
    assert doc["needed_components"] == {"QueryToPandas": 2, "TableOutput": 1}
    assert [f["verdict"] for f in doc["files"]] == ["needs", "runs", "error", "unknown"]


async def test_graph_of_a_run_colours_its_steps(tmp_path: Path) -> None:
    from flowtaskd.daemon.runs.store import AttemptRecord, HistoryStore, RunRecord  # noqa: PLC0415

    task = tmp_path / "job.yaml"
    task.write_text(
        "name: job\nsteps:\n  - Dummy: {name: a}\n  - Dummy: {name: b}\n  - Dummy: {name: c}\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    store = HistoryStore(state / "history.db")
    await store.open()
    try:
        stats = {"steps": {"a": {"status": "done"}, "b": {"status": "failed"}}}
        run = RunRecord("0001runabc", "job", "manual", "failed", source=str(task), stats=stats)
        await store.insert_run(run)
        await store.record_attempt(AttemptRecord("0001runabc", "a", 1, "failed"))
        await store.record_attempt(AttemptRecord("0001runabc", "a", 2, "done"))
    finally:
        await store.close()
    where = ["--state-dir", str(state)]
    text = flowtaskd("graph", "--run", "0001", *where, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[1].split()[:2] == ["done", "a"] and lines[2].split()[:2] == ["failed", "b"]
    assert lines[3].split()[:2] == ["pending", "c"]  # the run never got there
    dot = flowtaskd(
        "graph", str(task), "--run", "0001runabc", "--format", "dot", *where, cwd=tmp_path
    )
    assert dot.stdout.count("style=filled") == 3
    missing = flowtaskd("graph", "--run", "zzz", *where, cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (1, "flowtaskd: no run 'zzz' in the history\n")
    bare = flowtaskd("graph", cwd=tmp_path)
    assert bare.returncode == 2 and bare.stderr.startswith("flowtaskd: graph needs a FILE")
