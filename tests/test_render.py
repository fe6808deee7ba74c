"""Drawing a TaskPile: text, Graphviz dot and Mermaid, groups shown."""

from __future__ import annotations

import pytest

from flowtaskd.core.render import FORMATS, order, render
from flowtaskd.tasks import TaskPile

PILE = TaskPile(
    {
        "name": "report",
        "steps": [
            {"Dummy": {"name": "start"}},
            {"FileList": {"name": "ls", "path": "data", "to_group": "files", "depends": []}},
            {"Command": {"name": "count", "Group": "files", "command": ["wc", "{file}"]}},
            {"Command": {"name": "mark", "Group": "files", "command": ["echo", "{name}"]}},
            {"Command": {"name": "listing", "depends": "start", "command": ["ls"]}},
            {
                "Dummy": {
                    "name": "summary",
                    "depends": ["mark", "listing"],
                    "trigger_rule": "all_done",
                }
            },
        ],
    }
)


def test_order_is_topological_with_file_order_between_ready_steps() -> None:
    assert order(PILE) == ["start", "ls", "count", "mark", "listing", "summary"]


def test_text() -> None:
    assert render(PILE, "text") == (
        "task report: 6 steps, 1 group\n"
        "  start (Dummy) (root)\n"
        "  ls (FileList) (root)  [feeds group files]\n"
        "  count (Command) <- ls  [in group files, once per item]\n"
        "  mark (Command) <- count  [in group files, once per item]\n"
        "  listing (Command) <- start\n"
        "  summary (Dummy) <- mark, listing  [runs on all_done]\n"
        "group files: ls -> each item -> count, mark\n"
    )
    assert render(PILE) == render(PILE, "text")


def test_dot() -> None:
    assert render(PILE, "dot") == (
        'digraph "report" {\n'
        "  rankdir=LR;\n"
        "  node [shape=box];\n"
        '  "start" [label="start\\nDummy"];\n'
        '  "ls" [label="ls\\nFileList"];\n'
        '  "listing" [label="listing\\nCommand"];\n'
        '  "summary" [label="summary\\nDummy"];\n'
        '  subgraph "cluster_files" {\n'
        '    label="group files (once per item)"; style=dashed;\n'
        '    "count" [label="count\\nCommand"];\n'
        '    "mark" [label="mark\\nCommand"];\n'
        "  }\n"
        '  "start" -> "listing";\n'
        '  "ls" -> "count";\n'
        '  "count" -> "mark";\n'
        '  "mark" -> "summary" [label="all_done"];\n'
        '  "listing" -> "summary" [label="all_done"];\n'
        "}\n"
    )


def test_mermaid() -> None:
    assert render(PILE, "mermaid") == (
        "flowchart LR\n"
        '  s0["start<br/>Dummy"]\n'
        '  s1["ls<br/>FileList"]\n'
        '  s4["listing<br/>Command"]\n'
        '  s5["summary<br/>Dummy"]\n'
        '  subgraph g0["group files (once per item)"]\n'
        '    s2["count<br/>Command"]\n'
        '    s3["mark<br/>Command"]\n'
        "  end\n"
        "  s0 --> s4\n"
        "  s1 --> s2\n"
        "  s2 --> s3\n"
        "  s3 -->|all_done| s5\n"
        "  s4 -->|all_done| s5\n"
    )


def test_names_are_escaped() -> None:
    pile = TaskPile(
        {
            "name": 'say "hi" \\ bye',
            "steps": [
                {"FileList": {"path": ".", "to_group": 'odd "group" <x>'}},
                {"Dummy": {"Group": 'odd "group" <x>'}},
            ],
        }
    )
    dot = render(pile, "dot")
    assert dot.startswith('digraph "say \\"hi\\" \\\\ bye" {\n')
    assert '  subgraph "cluster_odd \\"group\\" <x>" {\n' in dot
    mermaid = render(pile, "mermaid")
    assert '  subgraph g0["group odd #quot;group#quot; #lt;x> (once per item)"]\n' in mermaid


def test_unknown_format() -> None:
    assert FORMATS == ("text", "dot", "mermaid")
    with pytest.raises(ValueError, match="unknown format 'svg'"):
        render(PILE, "svg")


RICH = TaskPile(
    {
        "name": "nightly",
        "schedule": "0 3 * * *",
        "steps": [
            {"Dummy": {"name": "fetch", "retry": {"attempts": 3, "delay": 30}, "timeout": "5m"}},
            {"Dummy": {"name": "load"}},
            {"Dummy": {"name": "alert", "depends": "load", "trigger_rule": "one_failed"}},
        ],
    }
)
RUN = {"fetch": "done", "load": "failed", "alert": "done"}


def test_retries_timeouts_rules_and_schedule_are_drawn() -> None:
    text = render(RICH, "text")
    assert text.startswith("task nightly (schedule: 0 3 * * *): 3 steps, 0 groups\n")
    assert "  fetch (Dummy) (root)  [retry x2, 30s fixed; timeout 5m]\n" in text
    assert "  alert (Dummy) <- load  [runs on one_failed]\n" in text
    dot = render(RICH, "dot")
    assert '  label="nightly (schedule: 0 3 * * *)"; labelloc=t;\n' in dot
    assert '"fetch" [label="fetch\\nDummy\\nretry x2, 30s fixed\\ntimeout 5m"];' in dot
    assert '  "load" -> "alert" [label="one_failed"];\n' in dot
    mermaid = render(RICH, "mermaid")
    assert mermaid.startswith('---\ntitle: "nightly (schedule: 0 3 * * *)"\n---\nflowchart LR\n')
    assert '  s0["fetch<br/>Dummy<br/>retry x2, 30s fixed<br/>timeout 5m"]\n' in mermaid
    assert "  s1 -->|one_failed| s2\n" in mermaid


def test_a_run_colours_each_step_by_its_state() -> None:
    text = render(RICH, "text", RUN)
    assert "  done    fetch (Dummy) (root)" in text and "  failed  load (Dummy) <- fetch" in text
    dot = render(RICH, "dot", RUN)
    assert 'fillcolor="#f4a3a3", tooltip="failed"];' in dot.split('"load" [')[1].split("\n")[0]
    assert dot.count("style=filled") == 3
    mermaid = render(RICH, "mermaid", {"fetch": "done"})  # steps the run never reached: pending
    assert "  classDef done fill:#b7e4c7,stroke:#555\n" in mermaid
    assert "  class s0 done\n" in mermaid and "  class s1,s2 pending\n" in mermaid
    assert render(RICH, "dot") == render(RICH, "dot", None)  # no run: no colours
    assert "style=filled" not in render(RICH, "dot")
