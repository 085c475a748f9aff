"""Every command README.md and docs/*.md show, run here; every config key they name, known.

The commands are collected from the fenced ``bash`` blocks and from inline code that starts like
a command (``.venv/bin/…``, ``snakemake …``, ``python3 -m venv …``, ``bash …``, ``pip …``).
A command joined with ``&&`` is taken part by part. Each part is run in a scratch working
directory that sees the checkout (its top-level entries linked in, ``.venv`` the running
environment):

- ``snakemake`` runs as a dry run (``-n`` added: anything that would train at real size is only
  planned; commands that differ only in ``--cores``, ``-p`` or ``--quiet`` are one plan, run
  once), piped into ``dot`` only when graphviz is installed (else its graph text is checked);
- the files a command writes (``printf … > file``) are written first, in document order;
- any other program runs with ``--help``, and every option the documented command uses must be
  one it lists.

What cannot run here is named in ``CANNOT_RUN``, each with why. A documented command that fails,
or a documented option, config key (``sft.common.cutoff_len``; the keys of ``yaml`` blocks) or
pip extra that does not exist, fails the test.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INLINE_COMMAND = re.compile(r"^(\.venv[\w-]*/bin/|snakemake |python3 -m venv |bash |pip )")
SETUP = re.compile(r"^(printf|echo|mkdir|cp|ln) ")
# (pattern of a command part, why it cannot run here); the first that matches decides.
CANNOT_RUN = [
    (r"^python3 -m venv ", "makes a virtual environment: minutes, and the network for packages"),
    (r"^cp results/", "copies a file of a finished paper-preset run (GPUs)"),
    (r"(^|/)pip install ", "installs from the package index (network); its extras are checked"),
    (r"^bash \.ci/run", "CI itself: installs both stacks and runs the whole suite"),
    (r"-m pytest", "the whole test suite, of which this test is a part"),
    (r"^tail -f ", "follows a log until interrupted"),
    (r"--report ", "needs a finished run: tests/test_workflow.py builds one and makes its report"),
    (r"^(mkdir -p \S+ && )?LMUData=|from vlmeval", "VLMEvalKit's download: the network"),
    (r"^hf download ", "a download from the Hugging Face hub: the network"),
    (r"^(srun|sbatch|squeue|sinfo) ", "needs a SLURM cluster (tests/test_slurm.py starts one)"),
    (r"^(apt|apt-get) ", "installs system packages"),
    (r"^\.venv-vllm/", "the vLLM environment, made by .ci/run, not here (test_vllm_backend.py)"),
    (r"<[\w ]+>|…|\.\.\.", "a template with placeholders (<…>), not a command"),
]
NEEDS_CONDA = "needs conda, which is not installed here (the env files are checked in test_envs)"


@dataclass(frozen=True)
class Command:
    source: str  # file name
    text: str  # one part of a documented command


def _parts(command: str) -> list[str]:
    """The parts of ``a && b && c``, splitting outside quotes only."""
    parts, current, quote = [], "", None
    i = 0
    while i < len(command):
        char = command[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif command.startswith("&&", i):
            parts.append(current.strip())
            current, i = "", i + 2
            continue
        current += char
        i += 1
    return [part for part in [*parts, current.strip()] if part]


def _without_comment(line: str) -> str:
    """``line`` up to a ``#`` that starts a shell comment (after a space, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def documented_commands() -> list[Command]:
    commands = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
            for line in block.group(1).replace("\\\n", " ").splitlines():
                line = _without_comment(line)
                if line and not line.startswith("#"):
                    commands += [Command(path.name, part) for part in _parts(line)]
        for span in re.finditer(r"`([^`\n]+)`", text):
            if INLINE_COMMAND.match(span.group(1)):
                commands += [Command(path.name, part) for part in _parts(span.group(1))]
    return commands


def filled(part: str) -> str:
    """A snakemake command with its placeholders (``<account>``) filled in: a plan runs with
    any value there."""
    if re.match(r"(\.venv/bin/)?snakemake ", part):
        return re.sub(r"<[\w ]+>", "x", part)
    return part


def why_not(part: str) -> str | None:
    for pattern, why in CANNOT_RUN:
        if re.search(pattern, part):
            return why
    if "--sdm conda" in part and shutil.which("conda") is None:
        return NEEDS_CONDA
    return None


def plan_key(part: str) -> str:
    """What a command plans: snakemake commands that differ only in how the plan is printed or
    in --cores (all dry runs here) are one plan, run once."""
    if not re.match(r"(\.venv/bin/)?snakemake ", part):
        return part
    words, kept = shlex.split(part.split(" | ")[0])[1:], []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
        elif word in ("--cores", "--quiet"):
            skip_next = True
        elif word not in ("-n", "--dry-run", "-p", "--printshellcmds"):
            kept.append(word)
    return "snakemake " + " ".join(kept) + (" | graph" if " | " in part else "")


def scratch_checkout(tmp_path: Path) -> Path:
    """A working directory that sees the checkout as the docs' commands expect."""
    work = tmp_path / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".venv", ".snakemake", "results", "data"}:
            (work / entry.name).symlink_to(entry)
    (work / ".venv").symlink_to(Path(sys.prefix))  # the environment running the tests
    return work


def _options(words: list[str]) -> set[str]:
    return {word.split("=")[0] for word in words if word.startswith("--") and word != "--"}


def check(part: str, work: Path) -> str | None:
    """Run one command part; None when it is fine, else what went wrong."""
    words = shlex.split(part)
    program = words[0]
    if program in ("snakemake", ".venv/bin/snakemake"):
        command, _, piped = part.partition(" | ")
        words = shlex.split(command)
        words[0] = ".venv/bin/snakemake"
        if not {"-n", "--dry-run", "--unlock", "--lint", "--rulegraph", "--dag"} & set(words):
            words.insert(1, "-n")  # plan only: nothing trains here
        result = subprocess.run(words, cwd=work, capture_output=True, text=True, timeout=300)
        said = result.stdout + result.stderr
        if result.returncode != 0:
            return said[-2500:]
        if piped and shutil.which("dot") is None and not result.stdout.lstrip().startswith(
            "digraph"
        ):
            return f"no graph for {piped}: {result.stdout[:300]}"
        return None
    if program.startswith(".venv") and program.endswith("/python") and len(words) > 1:
        help_words, used = [program, words[1], "--help"], words[2:]
    else:
        head = words[: words.index("--")] if "--" in words else words
        help_words, used = [program, "--help"], head[1:]
    result = subprocess.run(help_words, cwd=work, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return f"{' '.join(help_words)} failed: {(result.stdout + result.stderr)[-1500:]}"
    unknown = {option for option in _options(used) if option not in result.stdout}
    return f"options not in its --help: {sorted(unknown)}" if unknown else None


@pytest.mark.workflow
def test_every_documented_command_runs(tmp_path):
    work = scratch_checkout(tmp_path)
    commands = documented_commands()
    assert len(commands) > 30  # the collector finds the docs' commands
    skipped, to_run = {}, {}
    for command in commands:
        part = filled(command.text)
        if why := why_not(part):
            skipped.setdefault(why, []).append(part)
        elif SETUP.match(part):
            result = subprocess.run(["bash", "-c", part], cwd=work, capture_output=True)
            assert result.returncode == 0, (command, result.stderr)
        else:
            to_run.setdefault(plan_key(part), (part, command.source))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda run: check(run[0], work), to_run.values())
        problems = dict(zip(to_run.values(), results, strict=True))
    failed = {
        f"{source}: {part}": problem for (part, source), problem in problems.items() if problem
    }
    assert not failed, "\n\n".join(f"{key}\n{value}" for key, value in failed.items())
    # what could not run is only what the list above says
    print("not run here:", *(f"{why}: {len(parts)}" for why, parts in skipped.items()), sep="\n")
    assert any(key.startswith("snakemake") for key in to_run) and skipped


def test_the_extras_documented_in_pip_commands_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ])  # fmt: skip
    named = set()
    for command in documented_commands():
        for group in re.findall(r"pip install -e [\"']?\.\[([\w,]+)\]", command.text):
            named |= set(group.split(","))
    assert named and named <= extras, named - extras
    assert "deepspeed" in named  # the paper preset's trainings need it, and the docs say so


def _schema_knows(schema: dict, node: dict, keys: list[str]) -> bool:
    for key in keys:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        if key == "*":
            return True
        if key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        elif node.get("additionalProperties", True) is False or "properties" in node:
            return False
        else:
            return True
    return True


def _yaml_keys(value, prefix=()):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield [*prefix, str(key)]
            yield from _yaml_keys(inner, (*prefix, str(key)))


def test_every_documented_config_key_is_in_the_schema():
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    top = set(schema["properties"])
    named = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for span in re.finditer(r"`(?:config\.)?([a-z_]+(?:\.(?:[A-Za-z0-9_]+|\*))+)`", text):
            keys = span.group(1).split(".")
            if keys[0] in top and not span.group(1).endswith((".py", ".md", ".yaml", ".json")):
                named.append((path.name, keys))
        for block in re.finditer(r"```yaml\n(.*?)```", text, flags=re.S):
            try:
                data = yaml.safe_load(block.group(1))
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and set(data) <= top:
                named += [(path.name, keys) for keys in _yaml_keys(data)]
    assert len(named) > 50
    unknown = [f"{name}: {'.'.join(keys)}" for name, keys in named
               if not _schema_knows(schema, schema, keys)]  # fmt: skip
    assert not unknown, unknown
    assert _schema_knows(schema, schema, ["node", "gpus"])
    assert not _schema_knows(schema, schema, ["sft", "r0", "lerning_rate"])
