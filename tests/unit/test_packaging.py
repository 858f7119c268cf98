"""Packaging guards: environment.yml mirrors pyproject.toml, `import dashnb` stays cheap,
the public surface is complete, and no tracked file carries a secret or a machine path.

    python -m pytest tests/unit/test_packaging.py -q
"""

from __future__ import annotations

import ast
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
ENVIRONMENT = REPO / "environment.yml"

# PyPI name -> conda-forge name, where the two differ (normalised spellings).
PYPI_TO_CONDA = {
    "matplotlib": "matplotlib-base",  # the library without the Qt GUI stack
}
# Conda entries that are not Python distributions of the project.
CONDA_ONLY = {"python", "pip"}

HEAVY_MODULES = (
    "dashscope",
    "matplotlib",
    "ipywidgets",
    "aiohttp",
    "requests",
    "httpx",
    "httpx2",
    "httpcore",
    "openai",
    "markdown_it",  # the reply renderer's, loaded at the first reply shown
    "nh3",
)
IMPORT_BUDGET_S = 0.150
IMPORT_RUNS = 7


def normalise(name: str) -> str:
    """PEP 503 normalisation; conda-forge names follow the same rule for our purposes."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- a tiny YAML reader -------------------------------------------------------------
# environment.yml uses block mappings and sequences of plain scalars only; reading that
# subset here keeps the test free of a dependency the project does not declare.


def _yaml_lines(text: str) -> list[tuple[int, str]]:
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.strip():
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
    return lines


def _parse_block(lines: list[tuple[int, str]], i: int, indent: int):
    """Parse the block starting at lines[i] (which sits at `indent`); return (value, next i)."""
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            body = lines[i][1][1:].strip()
            i += 1
            if body.endswith(":") and ":" not in body[:-1]:
                # "- key:" opens a mapping with one key whose value is the deeper block
                value, i = _parse_block(lines, i, lines[i][0])
                items.append({body[:-1].strip(): value})
            else:
                items.append(body)
        return items, i
    mapping = {}
    while i < len(lines) and lines[i][0] == indent:
        key, _, value = lines[i][1].partition(":")
        i += 1
        if value.strip():
            mapping[key.strip()] = value.strip()
        elif i < len(lines) and lines[i][0] >= indent and lines[i][1].startswith("-"):
            mapping[key.strip()], i = _parse_block(lines, i, lines[i][0])
        else:
            mapping[key.strip()] = None
    return mapping, i


def read_simple_yaml(text: str):
    lines = _yaml_lines(text)
    value, end = _parse_block(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed YAML from line {lines[end][1]!r}"
    return value


# --- pyproject <-> environment.yml ---------------------------------------------------


# environment.yml is the learner's environment: what `pip install 'dashnb[lab]'` brings.
ENVIRONMENT_EXTRAS = ("lab",)


def pyproject_requirements(extras: tuple[str, ...] = ENVIRONMENT_EXTRAS) -> dict[str, str]:
    """Normalised name -> specifier of the runtime deps and the given extras."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    out = {}
    for text in reqs:
        req = Requirement(text)
        out[normalise(req.name)] = str(req.specifier)
    return out


def _split_spec(entry: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*", entry)
    assert match, f"unreadable environment.yml entry {entry!r}"
    return normalise(match.group(1)), match.group(2).replace(" ", "")


def environment() -> dict:
    return read_simple_yaml(ENVIRONMENT.read_text(encoding="utf-8"))


def environment_requirements() -> tuple[dict[str, str], dict[str, str]]:
    """(conda entries, pip entries), each normalised name -> specifier."""
    conda, pip = {}, {}
    for entry in environment()["dependencies"]:
        if isinstance(entry, dict):
            assert list(entry) == ["pip"], f"unexpected mapping in dependencies: {entry}"
            for pip_entry in entry["pip"]:
                assert not pip_entry.startswith("-"), (
                    f"environment.yml lists dependencies only, not pip options: {pip_entry!r}"
                )
                name, spec = _split_spec(pip_entry)
                pip[name] = spec
        else:
            name, spec = _split_spec(entry)
            conda[name] = spec
    return conda, pip


def _same_spec(a: str, b: str) -> bool:
    return sorted(filter(None, a.split(","))) == sorted(filter(None, b.split(",")))


def test_environment_yml_reader_agrees_with_pyyaml():
    yaml = pytest.importorskip("yaml", reason="PyYAML (a JupyterLab dependency) cross-checks the tiny reader")
    assert read_simple_yaml(ENVIRONMENT.read_text(encoding="utf-8")) == yaml.safe_load(
        ENVIRONMENT.read_text(encoding="utf-8")
    )


def test_environment_yml_uses_conda_forge_and_python_floor():
    env = environment()
    assert env["channels"] == ["conda-forge"]
    conda, _ = environment_requirements()
    requires_python = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["requires-python"]
    assert conda["python"] == requires_python.replace(" ", "")
    assert "pip" in conda, "a pip: section needs pip in the environment"


def test_environment_yml_mirrors_pyproject():
    wanted = pyproject_requirements()
    conda, pip = environment_requirements()
    doubled = set(conda) & set(pip)
    assert not doubled, f"listed both as conda and pip packages: {sorted(doubled)}"

    conda_to_pypi = {conda_name: pypi for pypi, conda_name in PYPI_TO_CONDA.items()}
    have = {}
    for name, spec in conda.items():
        if name in CONDA_ONLY:
            continue
        have[conda_to_pypi.get(name, name)] = spec
    for name, spec in pip.items():
        assert name not in PYPI_TO_CONDA.values(), f"{name} is a conda name; pip wants the PyPI name"
        have[name] = spec

    missing = sorted(set(wanted) - set(have))
    extra = sorted(set(have) - set(wanted))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"
    for pypi_name, conda_name in PYPI_TO_CONDA.items():
        assert pypi_name not in conda, f"conda-forge calls {pypi_name!r} {conda_name!r}"
    differing = {n: (wanted[n], have[n]) for n in wanted if not _same_spec(wanted[n], have[n])}
    assert not differing, f"version floors differ (pyproject, environment.yml): {differing}"


def test_environment_yml_is_the_learners_environment_without_contributor_tools():
    conda, pip = environment_requirements()
    contributor_only = set()
    for extra in ("test", "dev", "docs"):
        contributor_only |= set(pyproject_requirements((extra,))) - set(pyproject_requirements())
    assert contributor_only >= {"pytest", "playwright", "ruff", "mypy", "sphinx"}
    listed = {*conda, *pip, *(n for n, c in PYPI_TO_CONDA.items() if c in conda)}
    assert not contributor_only & listed, sorted(contributor_only & listed)


def test_the_extras_split_learners_from_contributors():
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    base = {normalise(Requirement(r).name) for r in project["dependencies"]}
    extras = {k: {normalise(Requirement(r).name) for r in v} for k, v in project["optional-dependencies"].items()}
    assert {"dashscope", "aiohttp", "requests", "httpx", "trustme"} <= base
    assert not {"matplotlib", "ipywidgets", "jupyterlab", "voila", "openai"} & base  # a small base package
    assert {"jupyterlab", "voila", "ipywidgets", "matplotlib", "openai"} <= extras["lab"]
    heavy_tools = {"playwright", "mypy", "ruff", "langchain-community", "langchain-openai", "pytest", "sphinx"}
    assert not heavy_tools & extras["lab"]
    assert heavy_tools <= extras["test"] | extras["dev"] | extras["docs"]


def test_mirror_check_can_fail():
    # Negative control: the comparison notices a dependency that only one side has.
    text = ENVIRONMENT.read_text(encoding="utf-8").replace("  - tqdm>=4.66\n", "")
    assert text != ENVIRONMENT.read_text(encoding="utf-8")
    names = {_split_spec(e)[0] for e in read_simple_yaml(text)["dependencies"] if isinstance(e, str)}
    assert "tqdm" in pyproject_requirements() and "tqdm" not in names


# --- import cost and public surface ----------------------------------------------------


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter rooted at the repo and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_TIMED_IMPORT = """
import json, sys, time
t0 = time.perf_counter()
import dashnb
elapsed = time.perf_counter() - t0
print(json.dumps({"elapsed": elapsed, "modules": sorted(sys.modules)}))
"""


def test_import_is_fast_and_light():
    runs = [json.loads(_python(_TIMED_IMPORT)) for _ in range(IMPORT_RUNS)]
    median = statistics.median(run["elapsed"] for run in runs)
    assert median < IMPORT_BUDGET_S, f"import dashnb took {median * 1000:.0f} ms (median of {IMPORT_RUNS})"
    loaded = set(runs[0]["modules"])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY_MODULES)
    assert not heavy, f"import dashnb loaded heavy modules: {heavy}"


def test_reloading_adds_no_second_null_handler():
    code = (
        "import importlib, logging, dashnb\n"
        "for _ in range(3):\n"
        "    importlib.reload(dashnb)\n"
        "print(sum(isinstance(h, logging.NullHandler) for h in logging.getLogger('dashnb').handlers))"
    )
    assert _python(code).strip() == "1"


def test_all_is_sorted_unique_and_resolves():
    out = _python(
        "import json, dashnb\n"
        "names = list(dashnb.__all__)\n"
        "missing = []\n"
        "for n in names:\n"
        "    try:\n"
        "        getattr(dashnb, n)\n"
        "    except Exception as exc:\n"
        "        missing.append(f'{n}: {type(exc).__name__}: {exc}')\n"
        "print(json.dumps({'all': names, 'missing': missing}))\n"
    )
    result = json.loads(out)
    names = result["all"]
    assert names == sorted(names), "dashnb.__all__ is not sorted"
    assert len(names) == len(set(names)), "dashnb.__all__ has duplicates"
    assert not result["missing"], f"names in __all__ that do not resolve: {result['missing']}"


def test_public_names_are_exactly_all():
    """Nothing leaks (no ``annotations``, ``importlib``, ``logging``), nothing is forgotten: the
    names a user can see are __all__, before and after every public name has been loaded, and
    every name __all__ lists has a module behind it."""
    out = _python(
        "import json, dashnb\n"
        "before = [n for n in dir(dashnb) if not n.startswith('_')]\n"
        "for n in dashnb.__all__:\n"
        "    getattr(dashnb, n)\n"
        "after = [n for n in dir(dashnb) if not n.startswith('_')]\n"
        "module_globals = [n for n in vars(dashnb) if not n.startswith('_')]\n"
        "print(json.dumps({'before': before, 'after': after, 'globals': module_globals,\n"
        "                  'lazy': sorted(dashnb._LAZY)}))\n"
    )
    result = json.loads(out)
    import dashnb

    assert result["before"] == sorted(dashnb.__all__)
    assert result["after"] == sorted(dashnb.__all__)
    assert set(result["globals"]) <= set(dashnb.__all__), "module attributes that are not public names"
    assert sorted(dashnb.__all__) == sorted([*result["lazy"], "emulator"])


def test_the_types_users_meet_are_exported():
    """Raised or returned to users, so they must be importable from the package itself."""
    import dashnb

    for name in ("MissingApiKeyError", "ModeSummary", "LatencyLab", "CallTiming", "Measurement", "AskError"):
        assert name in dashnb.__all__, name
    assert dashnb.MissingApiKeyError.__module__ == "dashnb"


def test_public_classes_say_dashnb_in_reprs_and_pickle_by_that_name():
    out = _python(
        "import json, pickle, dashnb\n"
        "scenario = next(iter(dashnb.SCENARIOS.values()))\n"  # its class met only as a value's type
        "config = pickle.loads(pickle.dumps(dashnb.PoolConfig(connection_pool_size=8)))\n"
        "print(json.dumps({'scenario': repr(type(scenario)), 'config': repr(type(config)),\n"
        "                  'error': repr(dashnb.AskError), 'size': config.connection_pool_size}))\n"
    )
    assert json.loads(out) == {
        "scenario": "<class 'dashnb.Scenario'>",
        "config": "<class 'dashnb.PoolConfig'>",
        "error": "<class 'dashnb.AskError'>",
        "size": 8,
    }


def test_the_package_ships_its_type_marker_and_subpackages():
    """py.typed (PEP 561) exists, and the wheel takes the whole dashnb/ folder: every subpackage and
    every data file in it (tests/kernel/test_distribution.py checks a built wheel's contents)."""
    hatch = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hatch"]["build"]
    assert (REPO / "dashnb" / "py.typed").is_file()
    assert "dashnb" in hatch["targets"]["wheel"]["only-include"]
    packages = [p.parent for p in (REPO / "dashnb").rglob("__init__.py")]
    assert all(p.is_relative_to(REPO / "dashnb") for p in packages) and len(packages) > 5, packages


# Packages whose modules still share private names among themselves: the emulator (its own
# layout), and the packages whose own private cross-imports are not yet public (_ask, _lab).
_PRIVATE_NAMES_KEPT = ("dashnb.emulator", "dashnb._ask", "dashnb._lab")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_imports(paths) -> list[str]:
    """``importer: module.name`` for each ``_name`` one dashnb module takes from another (by
    ``from module import _name`` or ``module._name``); private modules themselves may travel."""
    modules = {_module_name(p): p for p in (REPO / "dashnb").rglob("*.py")}
    found = []
    for path in paths:
        me = _module_name(path)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        aliases = {}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{me}: {source}.{alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{me}: {aliases[node.value.id]}.{node.attr}")
    return sorted(set(found))


def test_private_names_stay_in_their_module():
    """Inside a package names need no underscore, and between packages only public names travel:
    no module takes another's ``_name``."""
    paths = [p for p in (REPO / "dashnb").rglob("*.py") if not _module_name(p).startswith(_PRIVATE_NAMES_KEPT)]
    assert _private_imports(paths) == []


def test_private_name_scan_can_fail():
    # The negative control: the scan sees a private name imported from a sibling module.
    assert _private_imports([REPO / "dashnb" / "emulator" / "_relay.py"])


# --- tracked files: no secrets, no TLS shortcuts, no paths of this machine --------------

# Built from parts so that this file's own source does not match them.
_FORBIDDEN = {
    "an API key": re.compile("s" + r"k-[A-Za-z0-9]{20,}"),
    "an absolute path of this machine": re.compile("|".join(re.escape("/" + part + "/") for part in ("work", "root"))),
}
# Outside Python source (notebooks, docs, config) the text itself is the evidence.
_UNVERIFIED_TEXT = re.compile(r"\bverify\s*=\s*" + "False")


def _is_false(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _unverified_in_python(source: str) -> list[int]:
    """Lines of Python code that turn TLS verification off. Parsing (rather than grepping)
    reads `a.trust_env, a.verify = False, ca_path` right and ignores strings that merely
    name the mistake, such as a scanner's own samples."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in ("verify", "ssl", "verify_ssl") and _is_false(node.value):
            lines.append(node.value.lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts))
                for tgt, value in pairs:
                    name = getattr(tgt, "attr", getattr(tgt, "id", None))
                    if name in ("verify", "check_hostname") and _is_false(value):
                        lines.append(tgt.lineno)
        elif isinstance(node, (ast.Attribute, ast.Name)):
            name = getattr(node, "attr", getattr(node, "id", None))
            if name in ("CERT_NONE", "_create_unverified_context"):
                lines.append(node.lineno)
    return lines


def _tracked_text_files():
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8", "surrogateescape")
    for rel in filter(None, listed.split("\0")):
        path = REPO / rel
        if not path.is_file():  # deleted in the work tree but still in the index
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        yield rel, data.decode("utf-8", "replace")


def _violations(files) -> list[str]:
    found = []
    for rel, text in files:
        for what, pattern in _FORBIDDEN.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{rel}:{line}: {what}")
        if rel.endswith(".py"):
            try:
                lines = _unverified_in_python(text)
            except SyntaxError:
                lines = [text.count("\n", 0, m.start()) + 1 for m in _UNVERIFIED_TEXT.finditer(text)]
        else:
            lines = [text.count("\n", 0, m.start()) + 1 for m in _UNVERIFIED_TEXT.finditer(text)]
        found += [f"{rel}:{line}: disabled TLS verification" for line in lines]
    return found


def test_tracked_files_hold_no_secrets_or_machine_paths():
    files = list(_tracked_text_files())
    assert any(rel == "pyproject.toml" for rel, _ in files), "git ls-files listed nothing useful"
    assert _violations(files) == []


def test_secret_scan_can_fail():
    # Negative control: each pattern catches a sample assembled at run time.
    off = "Fal" + "se"
    samples = [
        ("key.txt", "api_key = 's" + "k-" + "a1B2" * 6 + "'"),
        ("tls.md", "requests.get(url, verify=" + off + ")"),
        ("path.ipynb", '"see /' + 'work/main/x"'),
        ("home.md", "cd /" + "root/"),
        ("kwarg.py", "requests.get(url, verify=" + off + ")"),
        ("attr.py", "s = requests.Session()\ns.verify = " + off),
        ("tuple.py", "s.trust_env, s.verify = True, " + off),
        ("aio.py", "aiohttp.TCPConnector(ssl=" + off + ")"),
        ("ctx.py", "ctx.check_hostname = " + off + "\nctx.verify_mode = ssl.CERT" + "_NONE"),
    ]
    assert len(_violations(samples)) == len(samples) + 1  # ctx.py holds two


def test_secret_scan_reads_python_not_strings():
    off = "Fal" + "se"
    clean = [
        ("ok.py", "s.trust_env, s.verify = " + off + ", ca_path\n"),
        ("ok2.py", "PATTERN = 'verify=" + off + "'\n"),
        ("ok3.py", "requests.get(url, verify=ca_path, timeout=5)\n"),
    ]
    assert _violations(clean) == []


# --- tests/nbval_sanitize.cfg --------------------------------------------------------------

SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"

# (raw output, what it must become); each sanitizer section has at least one sample.
SANITIZE_SAMPLES = [
    ("median 12.3 ms, p99 0.45 s", "median DURATION, p99 DURATION"),
    ("total 1,234.5 ms over 850 us (12ms first)", "total DURATION over DURATION (DURATION first)"),
    ("35.2 \u00b5s", "DURATION"),
    ("emulator 127.0.0.1:41234 (TLS 1.3)", "emulator 127.0.0.1:PORT (TLS 1.3)"),
    ("http://localhost:8888/lab and [::1]:5000", "http://localhost:PORT/lab and [::1]:PORT"),
    ("request_id 7c1e0a3e-5b7d-4a0e-9a53-2f1d8f0c6b21", "request_id UUID"),
    ("id='chatcmpl-7c1e0a3e-5b7d-4a0e-9a53-2f1d8f0c6b21'", "id='chatcmpl-ID'"),
    ("<Session object at 0x7f3a2c1b9d90>", "<Session object at 0xADDRESS>"),
    ("ca_path='/tmp/tmpab12cd/ca.pem'", "ca_path='/TMP-PATH'"),
    ("at 2025-01-31T12:34:56.789+08:00 and 2025-01-31 12:34:56", "at TIMESTAMP and TIMESTAMP"),
    ("Date: Fri, 31 Jan 2025 12:34:56 GMT", "Date: TIMESTAMP"),
    ("on 2025-01-31 at 12:34:56.5", "on DATE at CLOCK"),
    ("123.4 req/s vs 1,234 tokens/s", "THROUGHPUT vs THROUGHPUT"),
]
# Text that must survive untouched: configuration and counts are what the lessons assert.
SANITIZE_KEEP = [
    "PoolConfig(connect_timeout=120.0, connection_pool_size=32)",
    "tcp_connections=1 requests=10 sessions=3",
    "model qwen-plus, TLS 1.3, HTTP/1.1 200 OK",
    "3 connections for 30 requests",
    "requests>=2.31 urllib3 v2.2",
    "0x1F is not an address",
]


def _sanitize_pairs():
    from nbval.plugin import get_sanitize_patterns  # how nbval itself reads the file

    pairs = get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8"))
    sections = re.findall(r"^\[([\w-]+)\]$", SANITIZE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert len(pairs) == len(sections), "every [section] needs a regex: / replace: pair nbval can read"
    return pairs


def _sanitize(text: str) -> str:
    for regex, replace in _sanitize_pairs():
        text = re.sub(regex, replace, text)
    return text


def test_sanitize_cfg_is_ascii_and_compiles():
    SANITIZE.read_bytes().decode("ascii")  # nbval opens it with the locale's encoding
    for regex, _ in _sanitize_pairs():
        re.compile(regex)


@pytest.mark.parametrize(("raw", "expected"), SANITIZE_SAMPLES)
def test_sanitize_cfg_replaces(raw, expected):
    assert _sanitize(raw) == expected


@pytest.mark.parametrize("text", SANITIZE_KEEP)
def test_sanitize_cfg_keeps(text):
    assert _sanitize(text) == text
