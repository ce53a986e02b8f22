"""deploy/ must not drift from the program: its commands parse with the real `patrol` parser, its
stop timeouts outlast the drain, each worker owns its spool, and deploy/README.md's one table of
environment variables names every variable the code, the compose file, the units and the example read.

No container engine runs here, so nothing is started: the topology itself is tested as processes
on loopback in test_fleet.py.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "patrol.env.example"
README = DEPLOY / "README.md"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
PATROL_IMAGE = "patrol:local"
PATROL_BINARY = "/opt/patrol/.venv/bin/patrol"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}: compose's forms.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
INTERPOLATION_NAMES = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")  # $${NAME} is the container shell's
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def example_settings() -> dict[str, str]:
    """NAME=value lines of patrol.env.example that are set (commented ones are optional)."""
    settings = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        name, equals, value = line.partition("=")
        if equals and ENV_NAME.match(name):
            settings[name] = value
    return settings


def interpolate(text: str) -> str:
    """``text`` as compose would see it with deploy/.env copied from the example."""
    settings = example_settings()

    def value(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if settings.get(name):
            return settings[name]
        return default if operator and operator.endswith("-") else f"unset-{name}"

    return INTERPOLATION.sub(value, text)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def patrol_services() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items()
            if service.get("image") == PATROL_IMAGE and "entrypoint" not in service}


def compose_commands() -> list[pytest.param]:
    return [pytest.param([interpolate(word) for word in service["command"]], id=f"compose:{name}")
            for name, service in patrol_services().items()]


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Key → values of a systemd unit, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", unit.read_text(encoding="utf-8"))
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", ";", "[")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_command(unit: Path) -> list[str]:
    """ExecStart's patrol arguments, with systemd's specifiers and the example's settings filled in."""
    (exec_start,) = unit_settings(unit)["ExecStart"]
    settings = example_settings()
    line = exec_start.replace("%i", "1").replace("%H", "host")
    line = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: shlex.quote(settings.get(m[1], f"unset-{m[1]}")), line)
    # An unbraced $NAME is split into words by systemd.
    line = re.sub(r"\$([A-Z][A-Z0-9_]*)", lambda m: settings.get(m[1], ""), line)
    binary, *arguments = shlex.split(line)
    assert binary == PATROL_BINARY, f"{unit.name}: ExecStart runs {binary}, not {PATROL_BINARY}"
    return arguments


def unit_commands() -> list[pytest.param]:
    return [pytest.param(unit_command(unit), id=f"systemd:{unit.name}") for unit in UNITS]


def verb_options(verb: str) -> set[str]:
    parser = build_parser()
    verbs = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return set(verbs.choices[verb]._option_string_actions)


def seconds(duration: str | int) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", str(duration).strip())
    assert match, f"cannot read the duration {duration!r}"
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match[2]]


def table_variables() -> list[str]:
    """The variables named in the first column of deploy/README.md's environment table."""
    text = README.read_text(encoding="utf-8")
    tables = re.findall(r"^\| *variable *\|.*\n\|[-| ]+\|\n((?:\|.*\n?)+)", text, flags=re.MULTILINE)
    assert len(tables) == 1, f"{README}: expected one table of environment variables, found {len(tables)}"
    names = []
    for row in tables[0].splitlines():
        first_cell = row.split("|")[1]
        names.extend(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def environment_reads(root: Path) -> tuple[set[str], list[str]]:
    """Every variable name read from the environment under ``root``: ``os.environ.get(X)``,
    ``os.environ[X]``, ``os.getenv(X)``, ``X in os.environ``, and the same on a parameter called
    ``environ``. X may be a literal, a module constant or a loop variable over literals; any other
    X is returned as unresolved, with its place."""
    names: set[str] = set()
    unresolved: list[str] = []
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in sorted(root.rglob("*.py"))}
    # Across modules, since a name such as TOKEN_ENV is defined in one and read in another.
    constants: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        constants.setdefault(target.id, set()).add(node.value.value)
            if (isinstance(node, ast.For) and isinstance(node.target, ast.Name)
                    and isinstance(node.iter, ast.Tuple | ast.List)
                    and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts)):
                constants.setdefault(node.target.id, set()).update(e.value for e in node.iter.elts)

    def is_environ(node: ast.expr) -> bool:
        return (isinstance(node, ast.Name) and node.id == "environ") or (
            isinstance(node, ast.Attribute) and node.attr == "environ")

    for path, tree in trees.items():
        for node in ast.walk(tree):
            key: ast.expr | None = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                reads = node.func.attr in ("get", "pop", "setdefault") and is_environ(node.func.value)
                if reads or node.func.attr == "getenv":
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and is_environ(node.value):
                key = node.slice
            elif (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn)
                  and is_environ(node.comparators[0])):
                key = node.left
            if key is None:
                continue
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
            elif isinstance(key, ast.Name) and key.id in constants:
                names.update(constants[key.id])
            else:
                unresolved.append(f"{path.relative_to(root.parent)}:{node.lineno}: {ast.unparse(key)}")
    return names, unresolved


def test_compose_file_has_the_topology() -> None:
    services = compose()["services"]

    assert {"redis", "minio", "minio-setup", "review", "forward"} <= set(services)
    assert len([name for name in services if name.startswith("worker-")]) >= 3
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert services["minio-setup"]["restart"] == "no"
    assert "mc mb" in services["minio-setup"]["command"][0]


@pytest.mark.parametrize("argv", compose_commands() + unit_commands())
def test_every_patrol_command_parses_with_the_real_parser(argv: list[str]) -> None:
    if argv[0] == "run" and "--fleet" in argv and "--fleet" not in verb_options("run"):
        pytest.skip("`patrol run --fleet` is not an option of `run` yet (the fleet CLI is being added); "
                    "this worker command is checked as soon as it is")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"`patrol {' '.join(argv)}` does not parse:\n{errors.getvalue()}")


def test_stop_timeouts_outlast_the_drain_and_the_post_in_flight() -> None:
    parser = build_parser()
    for name, service in patrol_services().items():
        args, _ = parser.parse_known_args([interpolate(word) for word in service["command"]])
        grace_s = seconds(service.get("stop_grace_period", "10s"))  # compose's default is 10 s
        if args.verb == "run":
            assert grace_s > args.drain_timeout, f"compose {name}: stop_grace_period {grace_s}s <= drain timeout"
        if args.verb == "forward":
            assert grace_s > args.timeout, f"compose {name}: stop_grace_period {grace_s}s <= the POST timeout"
    for unit in UNITS:
        args, _ = parser.parse_known_args(unit_command(unit))
        (stop_s,) = unit_settings(unit)["TimeoutStopSec"]
        if args.verb == "run":
            assert seconds(stop_s) > args.drain_timeout, f"{unit.name}: TimeoutStopSec {stop_s} <= drain timeout"


def test_each_worker_owns_a_named_spool_volume_and_a_worker_id() -> None:
    document = compose()
    workers = {name: service for name, service in patrol_services().items() if service["command"][0] == "run"}
    spools, ids = [], []
    for name, service in workers.items():
        command = service["command"]
        spool = command[command.index("--spool") + 1]
        mounts = [volume.split(":") for volume in service["volumes"]]
        (volume,) = [source for source, target, *_ in mounts if target == spool]
        assert volume in document["volumes"], f"{name}: the spool {spool} is not on a named volume"
        spools.append(volume)
        ids.append(service["environment"]["PATROL_WORKER_ID"])
    assert len(workers) >= 3
    assert len(set(spools)) == len(spools), f"workers share a spool volume: {spools}"
    assert len(set(ids)) == len(ids), f"workers share a PATROL_WORKER_ID: {ids}"
    for unit in UNITS:
        settings = unit_settings(unit)
        assert settings["Restart"] == ["always"] and settings["User"] == ["patrol"], unit.name
        assert settings["EnvironmentFile"][0] == "/etc/patrol/patrol.env", unit.name


def test_the_image_installs_the_runtime_with_its_models() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")

    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, flags=re.MULTILINE)
    assert "COPY models ./models" in dockerfile
    assert "[train]" not in dockerfile and "train]" not in dockerfile


def test_the_table_names_every_variable_of_the_compose_file_units_and_example() -> None:
    table = set(table_variables())
    document = compose()
    in_compose = set(INTERPOLATION_NAMES.findall(COMPOSE.read_text(encoding="utf-8")))
    for service in document["services"].values():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(entry.partition("=")[::2] for entry in environment)
        in_compose.update(environment)
    in_units = set()
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8")
        in_units.update(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
        in_units.update(value.partition("=")[0] for value in unit_settings(unit).get("Environment", []))
    in_example = {line.lstrip("# ").partition("=")[0] for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
                  if re.match(r"^#? ?[A-Z][A-Z0-9_]*=", line)}

    for where, names in (("docker-compose.yml", in_compose), ("systemd units", in_units),
                         ("patrol.env.example", in_example)):
        missing = sorted(names - table)
        assert not missing, f"deploy/README.md's table lacks {', '.join(missing)} (named in deploy/{where})"


def test_the_table_names_every_variable_the_code_reads() -> None:
    read, unresolved = environment_reads(REPO / "pipeline")

    assert not unresolved, ("environment reads this test cannot name; use a string literal or a module "
                            "constant:\n" + "\n".join(unresolved))
    assert {"REDIS_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "PATROL_PASSWORD"} <= read  # the scan sees the known ones
    missing = sorted(read - set(table_variables()))
    assert not missing, f"deploy/README.md's table lacks {', '.join(missing)}, read under pipeline/"

