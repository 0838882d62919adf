"""Every command the README shows, run as it is written: each shell line of its bash blocks, its Python
blocks and its MCP configuration, offline, with the shipped default model, in a sandbox whose home folder
holds the `~/notes`, `~/code` and `~/corpus` the commands name. `l2v-search` is this checkout's package (what
`.venv/bin/l2v-search` is after the README's set-up). What cannot run here is in NOT_RUN, with the reason.
"""

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, real_model_env

pytestmark = pytest.mark.slow  # the shipped default model: one load per command that embeds
README = ROOT / "README.md"
SET_UP = ("python3 -m venv .venv", ".venv/bin/pip install ")
# The parts of README lines that are not run here, and why.
NOT_RUN = {
    SET_UP[0]: "creates a virtual environment: the suite already runs in one",
    SET_UP[1]: "installs from the package registry (network, minutes): the suite runs on that installation",
    ".venv/bin/python -m pytest -q": "the suite itself: .ci/run runs this line verbatim (checked below)",
    "l2v-search index ~/notes --name llama3 --model McGill-NLP/": "a published model's GBs in the Hugging "
    "Face cache (no network here); tests/test_published.py runs it on tiny models laid out the same way",
}
# Lines that serve or watch until stopped (started, checked while they run, then stopped), and the line that
# talks to the server (run while it serves).
LONG_RUNNING = ("l2v-search serve", "l2v-search index ~/notes --watch", "curl ")
SERVE_URL = "http://127.0.0.1:8765"  # `serve`'s default address, which the README's clients use
NOTES = {
    "logging.md": "# Logging\n\n## Rotation\n\nRotate the logs every night with logrotate.\n",
    "plants.txt": "Water the plants on Monday and Thursday.\n",
}
CODE = {
    "app.py": "def rotate_logs():\n    return 'rotated'\n",
    "tests/test_app.py": "def test_rotate():\n    assert True\n",
    "README.md": "# App\n",
}
SAMPLE_ARTICLES = ("malacidin.md",)  # the one the README's first query is about: the run embeds only it


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def shell_lines(text: str) -> list[str]:
    """Each command of the README's bash blocks once (the first time it appears), in order, without its
    comment."""
    lines: list[str] = []
    for block in fenced_blocks(text, "bash"):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if shlex.split(command, comments=True) and command not in lines:
                lines.append(command)
    return lines


def runnable_part(line: str) -> str | None:
    """The line less its NOT_RUN parts (`&&`-joined steps), `.venv/bin/` dropped; None if nothing is left."""
    steps = [step.strip() for step in line.split(" && ")]
    kept = [step for step in steps if not any(step.startswith(part) for part in NOT_RUN)]
    return " && ".join(step.removeprefix(".venv/bin/") for step in kept) or None


LINES = shell_lines(README.read_text())
RUNNABLE = [
    pytest.param(line, id=line, marks=[pytest.mark.ray] if "--ray" in line else [])
    for line in LINES
    if runnable_part(line) and not runnable_part(line).startswith(LONG_RUNNING)
]


@dataclass
class Sandbox:
    home: Path
    work: Path
    env: dict[str, str]

    def bash(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """`command` in bash, in the working folder, with no input (an interactive loop ends at once)."""
        return subprocess.run(
            ["bash", "-c", self.prelude + command],
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, command: str, log: Path) -> subprocess.Popen:
        """`l2v-search ...` in the background, as the process itself (so that Ctrl-C reaches it)."""
        program = f'exec "{sys.executable}" -m llm2vec_search '
        with log.open("w") as output:
            return subprocess.Popen(
                ["bash", "-c", program + command.removeprefix("l2v-search ")],
                cwd=self.work,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # A backgrounded test run ignores SIGINT and children inherit that; Ctrl-C must reach this.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    @property
    def prelude(self) -> str:
        return f'l2v-search() {{ "{sys.executable}" -m llm2vec_search "$@"; }}\n'


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Sandbox:
    """A home with the folders the README indexes, a working folder with one of sample_corpus/'s articles,
    and the `default` and `code` indexes the README's queries search, built by the README's own lines."""
    root = tmp_path_factory.mktemp("readme")
    home, work = root / "home", root / "work"
    write(home / "notes", NOTES)
    write(home / "code", CODE)
    write(home / "corpus", {"one.txt": "A single short file for the Ray run.\n"})
    (work / "sample_corpus").mkdir(parents=True)
    for name in SAMPLE_ARTICLES:
        shutil.copy(ROOT / "sample_corpus" / name, work / "sample_corpus" / name)
    env = {**real_model_env(), "HOME": str(home), "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    box = Sandbox(home, work, env)
    for line in ("l2v-search index ~/notes", "l2v-search index ~/code --name code"):
        built = box.bash(next(each for each in LINES if each.startswith(line)))  # as test_shell_line runs it
        assert built.returncode == 0, built.stderr
    return box


def test_the_readme_has_the_commands_this_test_expects():
    assert LINES[0].startswith(
        "python3 -m venv .venv && .venv/bin/pip install -q --no-compile torch==2.13.0 -e . && "
    )
    assert any(line.startswith(LONG_RUNNING[0]) for line in LINES)
    assert any(line.startswith(LONG_RUNNING[1]) for line in LINES)
    assert len(fenced_blocks(README.read_text(), "python")) == 3
    assert len(RUNNABLE) >= 15


def test_ci_runs_the_readmes_test_command_verbatim():
    test_command = next(line for line in LINES if line.endswith(".venv/bin/python -m pytest -q"))
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.parametrize("line", RUNNABLE)
def test_shell_line(sandbox, line):
    result = sandbox.bash(runnable_part(line))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    if "--json" in line:
        assert json.loads(result.stdout)["hits"], result.stdout
    if "--ray" in line:
        assert "embedded on" in result.stderr and "Ray worker" in result.stderr, result.stderr


def test_watch_line_keeps_the_index_current(sandbox, tmp_path):
    line = next(each for each in LINES if each.startswith(LONG_RUNNING[1]))
    log = tmp_path / "watch.log"
    watcher = sandbox.start(runnable_part(line), log)
    try:
        wait_for(lambda: "watching" in log.read_text(), watcher, log)
        (sandbox.home / "notes" / "new.md").write_text("# Backups\n\nBack up the database hourly.\n")
        wait_for(lambda: "updated: 1 added" in log.read_text(), watcher, log)
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=60) == 0, log.read_text()
        (sandbox.home / "notes" / "new.md").unlink()


def test_serve_line_answers_the_readmes_clients(sandbox, tmp_path):
    """`serve` as written, then what the README sends it: the curl line, the OpenAI client and the RAG
    client example (both Python blocks about serving)."""
    line = next(each for each in LINES if each.startswith(LONG_RUNNING[0]))
    log = tmp_path / "serve.log"
    server = sandbox.start(runnable_part(line), log)
    try:
        wait_for(lambda: answers(f"{SERVE_URL}/health"), server, log)
        curl = sandbox.bash(next(each for each in LINES if each.startswith("curl ")))
        assert curl.returncode == 0 and json.loads(curl.stdout)["hits"], curl.stdout + curl.stderr
        openai_block, rag_block = fenced_blocks(README.read_text(), "python")[1:]
        vector = run_python(sandbox, openai_block + "\nprint(len(vector))\n", cwd=sandbox.work)
        assert vector.strip() == "384"
        printed = run_python(sandbox, rag_block + "\nprint(len(hits), prompt)\n", cwd=ROOT)
        assert int(printed.split()[0]) >= 1 and "Which antibiotics were found in soil?" in printed, printed
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0, log.read_text()


def test_python_api_block(sandbox):
    """The library example, in a folder holding ./notes (it indexes them into ./indexes/notes)."""
    api_block = fenced_blocks(README.read_text(), "python")[0]
    shutil.copytree(sandbox.home / "notes", sandbox.work / "notes", dirs_exist_ok=True)
    printed = run_python(sandbox, api_block, cwd=sandbox.work)
    assert "logging.md" in printed


def test_mcp_configuration_starts_the_server(sandbox):
    """The `mcpServers` entry is valid JSON whose command serves the `default` index over stdio (it stops at
    the end of its input, as when a client closes)."""
    config = json.loads(fenced_blocks(README.read_text(), "json")[0])["mcpServers"]["l2v-search"]
    assert config["command"] == "l2v-search"
    done = sandbox.bash(shlex.join(["l2v-search", *config["args"]]), timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def run_python(sandbox: Sandbox, code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=sandbox.env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def test_not_run_names_only_parts_of_readme_lines():
    """Every NOT_RUN entry is part of a README line (none stale), and a line is left out, whole or in part,
    only through one of them; the set-up line of the first command still runs its index and query."""
    for part in NOT_RUN:
        assert any(part in line for line in LINES), part
    for line in LINES:
        if runnable_part(line) != line:
            assert any(part in line for part in NOT_RUN), line
    assert runnable_part(LINES[0]).startswith("l2v-search index sample_corpus && l2v-search query ")
