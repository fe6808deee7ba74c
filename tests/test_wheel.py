"""A wheel that runs: built with ``python -m build``, installed into a fresh venv, used from an
empty directory. Slow (a build and an install, ~30 s): marked ``slow``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for_sync

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    (wheel,) = dist.glob("*.whl")
    subprocess.run(
        [str(root / "bin" / "pip"), "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return root


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    here = tmp_path / "empty"
    here.mkdir()
    return here


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "flowtaskd"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sdist_has_the_config_and_the_unit(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames()}
    assert {"config/flowtaskd.yaml", "systemd/flowtaskd.service", "LICENSE"} <= names
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as whl:
        meta = whl.read(next(n for n in whl.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "Classifier: Typing :: Typed" in meta


def test_installed_in_an_empty_directory(venv: Path, empty: Path) -> None:
    version = run(venv, empty, "--version")
    assert version.returncode == 0 and version.stdout.startswith("flowtaskd 0.")
    path = Path(run(venv, empty, "schema", "--path").stdout.strip())
    assert path.is_file() and venv in path.parents
    assert (venv / "share" / "man" / "man1" / "flowtaskd.1").is_file()

    made = run(venv, empty, "init", "site", "--systemd")
    assert made.returncode == 0, made.stderr
    site = empty / "site"
    for name in ("flowtaskd.yaml", "tasks/hello.yaml", "flowtaskd.service"):
        assert (site / name).is_file()
    assert (site / "inbox").is_dir()
    again = run(venv, empty, "init", "site")
    assert again.returncode == 2 and again.stderr.startswith("flowtaskd: ")
    assert "--force" in again.stderr
    unit = (site / "flowtaskd.service").read_text()
    exec_start = f"ExecStart={venv}/bin/flowtaskd run --config {site}/flowtaskd.yaml"
    assert exec_start in unit.splitlines()
    checked = run(venv, empty, "validate", str(site / "tasks"))
    assert checked.returncode == 0, checked.stderr
    assert "(1 step)" in checked.stdout
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        verify = subprocess.run(
            [analyze, "verify", "--man=no", str(site / "flowtaskd.service")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@pytest.fixture
def daemon_in(venv: Path, empty: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = empty.parent / "daemon.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(venv / "bin" / "flowtaskd"), "run"], cwd=empty, stderr=err, stdout=err
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_daemon_starts_without_a_task_folder_and_waits_for_it(
    daemon_in: tuple[subprocess.Popen[bytes], Path], empty: Path
) -> None:
    proc, log = daemon_in

    def seen(event: str) -> dict[str, Any] | None:
        return next((e for e in _lines(log) if e.get("event") == event), None)

    missing = wait_for_sync(lambda: seen("task_folder_missing"), 30)
    assert missing["folder"] == str(empty / "config" / "tasks")
    assert missing["level"] == "warning"
    wait_for_sync(lambda: seen("daemon_ready"), 30)
    tasks = empty / "config" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "hello.yaml").write_text("name: hello\nsteps:\n  - Dummy: {}\n")
    loaded = wait_for_sync(lambda: seen("task_loaded"), 30)
    assert loaded["task"] == "hello"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
