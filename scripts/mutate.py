"""Mutation testing of the modules that carry bastion's promises (`make mutate`).

Each module is mutated by mutmut and tested against *its own* test files only, so one module
takes minutes, not the hours the whole suite times every mutant would. A survivor is either
killed by a new test or explained in ``docs/mutation-equivalents.toml`` (why no test can or
should tell it apart); ``docs/mutation.md`` is regenerated with the score per module and every
survivor. The run fails while any survivor is unexplained.

    python scripts/mutate.py                      # every module
    python scripts/mutate.py vault/crypto.py      # one (or several) by their path under bastion/
    python scripts/mutate.py --survivors vault/crypto.py   # after adding tests: rerun only
                                                           # the last full run's survivors

Why mutmut (3.x) and not cosmic-ray: mutmut switches mutants at run time through trampolines
in one forked pytest process per mutant, and runs only the tests that reach the mutated
function (measured once per module), so 200 mutants of ``vault/crypto.py`` take ~40 s on two
loaded cores; cosmic-ray rewrites the file and restarts the interpreter for every mutant, and
needs a job database and a separate worker set-up for parallel runs.

Each module runs in a throw-away workspace (``.mutate/<name>/``: a copy of ``src/``,
``tests/``, ``docs/``, ``conftest.py`` and ``pyproject.toml`` plus a generated
``setup.cfg``), so the checkout is never rewritten and two modules never share mutmut state.

Hung mutants. mutmut ends a mutant's run at a CPU-time limit and, from a thread of its own,
at a wall-clock limit of 15 x (the measured time of the tests reaching the mutated function
+ 1 s), counting either as "timeout". A deadlocked mutant (``store/engine.py``: a writer
thread that never wakes) uses no CPU, so only the wall-clock limit stops it, and for the
engine, whose functions nearly every test of its files reaches (~40 s), that is ~10 minutes
per hung mutant; it also ends only the mutant's process, not the processes its tests started
(a kill-9 storm's writers write on). The modules of ``HANG_LIMITS`` therefore run with the
pytest plugin ``scripts/mutate_limit.py``: a limit per *test* of a mutant's run, a floor plus
a factor of that test's own duration in mutmut's clean run, so a mutant that hangs in a fast
test is stopped in seconds; it kills the run's process group (the run leads its own) and ends
with mutmut's "timeout" status. A test past its limit is stopped only while it is idle (a
deadlock sleeps; a test slowed down by a loaded machine still computes, and a limit that
stopped it would count a mere survivor as detected). mutmut's own limits stay as they were,
and the other modules run without the plugin (their results do not change).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutate"
REPORT = ROOT / "docs" / "mutation.md"
EQUIVALENTS = ROOT / "docs" / "mutation-equivalents.toml"
#: The last result of every module, so a run of one module rewrites its part of the report.
RESULTS = ROOT / "docs" / "mutation.json"

#: module (under src/bastion/) -> the test files that own its promises.
MODULES: dict[str, list[str]] = {
    "vault/crypto.py": ["tests/vault/test_crypto.py", "tests/vault/test_encrypted.py"],
    "vault/rules.py": ["tests/vault/test_secret_rules.py"],
    "supervisor/redact.py": ["tests/supervisor/test_redact.py"],
    "supervisor/policy.py": ["tests/supervisor/test_policy.py"],
    "store/migrate/history.py": [
        "tests/store/test_migrate_history.py",
        "tests/store/test_migrations.py",
        "tests/store/test_migrations_property.py",
    ],
    "store/posture.py": ["tests/store/test_posture.py", "tests/store/test_engine.py"],
    "store/recovery.py": [
        "tests/store/test_recovery.py",
        "tests/store/test_io_faults.py",
        "tests/store/test_open_check_ahead.py",
        "tests/store/test_check_deadline.py",
        "tests/store/test_encryption.py",
        "tests/cli/test_db_ops.py",
    ],
    "api/security.py": [
        "tests/api/test_security.py",
        "tests/api/test_security_properties.py",
        "tests/api/test_security_edges.py",
    ],
    "store/plan.py": ["tests/store/test_plan.py"],
    "_home.py": [
        "tests/cli/test_missing_db.py",
        "tests/test_shared_home.py",
        "tests/cli/test_home.py",
    ],
    "supervisor/states.py": ["tests/supervisor/test_states.py"],
    "store/tx.py": [
        "tests/store/test_engine.py",
        "tests/store/test_contract.py",
        "tests/store/test_repo.py",
        "tests/store/test_faults.py",
        "tests/store/test_plan.py",
    ],
    "store/_errors.py": [
        "tests/store/test_errors.py",
        "tests/store/test_engine.py",
        "tests/store/test_contract.py",
        "tests/store/test_io_faults.py",
        "tests/store/test_fts_damage.py",
    ],
}

#: Modules whose mutants can hang -> (floor s, factor): each test of a mutant's run is stopped
#: after floor + factor x its clean duration (scripts/mutate_limit.py; see the docstring).
HANG_LIMITS: dict[str, tuple[float, float]] = {}
PLUGIN = ROOT / "scripts" / "mutate_limit.py"


@dataclass
class Survivor:
    key: str
    function: str
    removed: list[str]
    added: list[str]
    why: str | None = None


@dataclass
class ModuleResult:
    module: str
    tests: list[str]
    statuses: dict[str, int] = field(default_factory=dict)
    survivors: list[Survivor] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def killed(self) -> int:
        return self.statuses.get("killed", 0)

    @property
    def timeouts(self) -> int:
        """Mutants that made their tests hang (stopped at mutmut's CPU-time or wall-clock
        limit, or at HANG_LIMITS' limit per test): the tests did not pass, so they count as
        killed."""
        return self.statuses.get("timeout", 0)

    @property
    def not_run(self) -> int:
        """Mutants a run stopped before testing (``--collect`` after an interrupted run)."""
        return self.statuses.get(NOT_CHECKED, 0)

    @property
    def explained(self) -> int:
        return sum(1 for s in self.survivors if s.why)

    @property
    def unexplained(self) -> list[Survivor]:
        return [s for s in self.survivors if not s.why]

    @property
    def score(self) -> float:
        """Killed over the mutants a test could kill (explained equivalents left out)."""
        relevant = self.total - self.not_run - self.explained
        return 100.0 * (self.killed + self.timeouts) / relevant if relevant else 100.0


def _workspace(module: str, tests: list[str]) -> Path:
    ws = _ws_path(module)
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    for name in ("src", "tests", "docs"):  # docs: the tests that compare generated pages
        shutil.copytree(
            ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, ws / name)
    plugin = ""
    if module in HANG_LIMITS:
        (ws / "plugins").mkdir()
        shutil.copy2(PLUGIN, ws / "plugins" / PLUGIN.name)
        plugin = f"    -p\n    {PLUGIN.stem}\n"
    selection = "\n".join(f"    {t}" for t in tests)
    (ws / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = src/bastion\n"
        f"only_mutate = src/bastion/{module}\n"
        f"pytest_add_cli_args_test_selection =\n{selection}\n"
        # mutmut runs the tests inside mutants/: the root conftest.py (its fixtures, pg_url
        # among them) and docs/ go there too.
        "also_copy =\n    docs\n    conftest.py\n"
        # mutmut adds -x itself (the first failing test kills the mutant); no cache dir; the
        # properties run the `mutate` hypothesis profile's smaller budget (tests/conftest.py).
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    --hypothesis-profile=mutate\n"
        + plugin,
        encoding="utf-8",
    )
    return ws


def _mutmut(ws: Path, *args: str, module: str | None = None) -> str:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if module in HANG_LIMITS:  # the plugin the workspace's setup.cfg loads, and its limit
        floor, factor = HANG_LIMITS[module]
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ws / "plugins"), env.get("PYTHONPATH")) if p
        )
        env["MUTATE_TEST_LIMIT"] = f"{floor}:{factor}"
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0 and args[0] != "run":
        raise SystemExit(f"mutmut {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _survivors(ws: Path, module: str, keys: list[str]) -> list[Survivor]:
    """Each mutant's changed lines, read from the mutated file mutmut wrote (it holds every
    mutant's function beside the original): the lines `mutmut show` prints, without starting
    mutmut once per survivor (seconds each on a loaded machine)."""
    source = (ws / "mutants" / "src" / "bastion" / module).read_text(encoding="utf-8")
    lines = source.splitlines()
    bodies = {
        # From the def line, its mutant's name taken out (a default value's mutant is there).
        node.name: [
            re.sub(r"__mutmut_(?:orig|\d+)\(", "(", lines[node.lineno - 1], count=1),
            *lines[node.lineno : node.end_lineno],
        ]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    found = []
    for key in keys:
        name = key.rsplit(".", 1)[-1]
        base = name.split("__mutmut_", maxsplit=1)[0]
        removed: list[str] = []
        added: list[str] = []
        diff = difflib.unified_diff(bodies[f"{base}__mutmut_orig"], bodies[name], lineterm="", n=0)
        for line in diff:
            if not line.startswith(("---", "+++", "@@")):
                (removed if line[0] == "-" else added).append(line[1:].strip())
        # x_name for a function, xǁClassǁname for a method.
        function = base.removeprefix("x_").removeprefix("xǁ").replace("ǁ", ".").strip(".")
        found.append(Survivor(key, function, removed, added))
    return found


def _load_equivalents() -> dict[str, list[dict[str, Any]]]:
    if not EQUIVALENTS.exists():
        return {}
    data = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return {m: list(v) for m, v in data.items()}


def _explain(module: str, survivors: list[Survivor]) -> None:
    """An explanation matches a survivor by its function and its changed lines (not by
    mutmut's running number, which shifts whenever the function gains a mutant)."""
    for entry in _load_equivalents().get(module, []):
        for s in survivors:
            if (
                s.why is None
                and entry.get("function") == s.function
                and [str(x) for x in entry.get("removed", [])] == s.removed
                and [str(x) for x in entry.get("added", [])] == s.added
            ):
                s.why = str(entry["why"])


def _ws_path(module: str) -> Path:
    return WORK / module.replace("/", "_").removesuffix(".py")


def run_module(module: str, *, mode: str = "full") -> ModuleResult:
    """Mutate ``module`` in a fresh workspace. Mode ``survivors`` reruns only the mutants the
    last full run left alive, against the checkout's tests of today (a test added to kill
    them is picked up; every mutant already killed stays killed, as the source and the old
    tests are unchanged); refused when the module changed since that run. Mode ``collect``
    runs nothing: it reads the workspace as a stopped run left it (untested mutants are
    reported as not run)."""
    tests = MODULES[module]
    result = ModuleResult(module, tests)
    if mode == "full":
        ws = _workspace(module, tests)
        started = time.monotonic()
        log = _mutmut(ws, "run", "--max-children", str(os.cpu_count() or 2), module=module)
        seconds = time.monotonic() - started
        (ws / "seconds").write_text(f"{seconds:.1f}\n", encoding="utf-8")
    else:
        ws = _ws_path(module)
        source = Path("src", "bastion", module)
        if (
            not (ws / "seconds").exists()
            or (ws / source).read_bytes() != (ROOT / source).read_bytes()
        ):
            raise SystemExit(f"{module}: changed since its last full run (or none): run it whole")
        log = ""
        alive = [k for k, status in _statuses(ws) if status not in ("killed", "timeout")]
        if mode == "survivors" and alive:  # (the untested mutants of a stopped run too)
            shutil.rmtree(ws / "tests")
            shutil.copytree(
                ROOT / "tests", ws / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
            log = _mutmut(
                ws, "run", "--max-children", str(os.cpu_count() or 2), *alive, module=module
            )
        # The module's time is its full run's: the figure a run of `make mutate` takes.
        seconds = float((ws / "seconds").read_text(encoding="utf-8"))
    if "Traceback" in log or "failed to collect stats" in log:
        # (the clean run of the tests failed: no mutant ran, and all would count as not run)
        raise SystemExit(f"{module}: mutmut failed:\n{log[-3000:]}")
    if log:
        (ws / "run.log").write_text(log, encoding="utf-8")
    result.seconds = seconds
    alive = []
    for key, status in _statuses(ws):
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status not in ("killed", "timeout", NOT_CHECKED):
            alive.append(key)
    result.survivors = _survivors(ws, module, alive)
    if not result.statuses:
        raise SystemExit(f"{module}: mutmut produced no mutants; see {ws / 'run.log'}")
    _explain(module, result.survivors)
    return result


def _statuses(ws: Path) -> list[tuple[str, str]]:
    found = []
    for line in _mutmut(ws, "results", "--all", "true").splitlines():
        key, _, status = line.strip().rpartition(": ")
        if key:
            found.append((key, status))
    return found


#: What the report's table says for a module of MODULES that has no result yet.
NOT_RUN = "not run yet"
#: mutmut's status of a mutant no run has tested yet.
NOT_CHECKED = "not checked"


def render(results: list[ModuleResult]) -> str:
    """The report: one row per module of MODULES (those without a result say so), then the
    survivors of each module."""
    lines = [
        "# Mutation testing",
        "",
        "Generated by `make mutate` (`scripts/mutate.py`, mutmut); do not edit by hand.",
        "Each module is mutated and run against its own test files only. A survivor is a",
        "change to the code that no test noticed: it is either killed by a new test or",
        "explained as equivalent in `docs/mutation-equivalents.toml`. A timeout is a mutant",
        "that made its tests hang (stopped at a CPU-time limit): detected, like a kill.",
        "Score = (killed + timeout) / (mutants - explained equivalents).",
        "",
        "| module | tests | mutants | killed | timeout | explained | unexplained | score | time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    done = {r.module: r for r in results}
    for module, module_tests in MODULES.items():
        tests = "<br>".join(f"`{t}`" for t in module_tests)
        r = done.get(module)
        if r is None:
            lines.append(f"| `{module}` | {tests} | {NOT_RUN} | | | | | | |")
            continue
        lines.append(
            f"| `{r.module}` | {tests} | {r.total}{f' ({r.not_run} not run)' if r.not_run else ''} | {r.killed} | {r.timeouts} | {r.explained} | "
            f"{len(r.unexplained)} | {r.score:.1f}% | {r.seconds:.0f} s |"
        )
    for r in results:
        if not r.survivors:
            continue
        lines += ["", f"## `{r.module}`", ""]
        for s in r.survivors:
            status = "explained" if s.why else "**UNEXPLAINED**"
            lines.append(f"- `{s.function}` ({status})")
            lines.append("  ```diff")
            lines += [f"  - {x}" for x in s.removed] + [f"  + {x}" for x in s.added]
            lines.append("  ```")
            if s.why:
                lines.append(f"  {s.why}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="paths under src/bastion/ (default: all)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--survivors",
        action="store_const",
        const="survivors",
        dest="mode",
        help="rerun only the survivors of each module's last full run, with today's tests",
    )
    how.add_argument(
        "--collect",
        action="store_const",
        const="collect",
        dest="mode",
        help="run nothing: report each module's workspace as its last (stopped) run left it",
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a mutated module: {', '.join(unknown)} (known: {', '.join(MODULES)})")
    chosen = args.modules or list(MODULES)
    results = []
    for module in chosen:
        print(f"mutating {module} against {', '.join(MODULES[module])} ...", flush=True)
        r = run_module(module, mode=args.mode or "full")
        print(
            f"  {r.total} mutants, {r.killed} killed, {r.timeouts} timeout, {r.explained} explained, "
            f"{len(r.unexplained)} unexplained ({r.score:.1f}%) in {r.seconds:.0f} s",
            flush=True,
        )
        for s in r.unexplained:
            print(f"    {s.key}: - {' / '.join(s.removed)}  + {' / '.join(s.added)}")
        results.append(r)
    stored = _load_results()
    stored.update({r.module: r for r in results})
    RESULTS.write_text(
        json.dumps(
            {m: dataclasses.asdict(stored[m]) for m in MODULES if m in stored},
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    REPORT.write_text(render([stored[m] for m in MODULES if m in stored]), encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")
    return 1 if any(r.unexplained for r in results) else 0


def _load_results() -> dict[str, ModuleResult]:
    """Earlier results of modules not run this time, re-explained against today's file."""
    if not RESULTS.exists():
        return {}
    found = {}
    for module, data in json.loads(RESULTS.read_text(encoding="utf-8")).items():
        if module not in MODULES:
            continue
        survivors = [Survivor(**{**s, "why": None}) for s in data.pop("survivors")]
        result = ModuleResult(**data, survivors=survivors)
        _explain(module, result.survivors)
        found[module] = result
    return found


if __name__ == "__main__":
    raise SystemExit(main())
