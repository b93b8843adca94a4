"""docker-compose.yml and the broker configuration describe the same stack scripts/services runs."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_parses_and_names_the_services() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"timescaledb", "mosquitto"} <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert "pg17" in services["timescaledb"]["image"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    mounts = " ".join(services["mosquitto"]["volumes"])
    assert "deploy/mosquitto/mosquitto.conf" in mounts
    assert "deploy/mosquitto/acl" in mounts
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} must not listen on every interface"


def test_compose_broker_config_requires_client_certificates() -> None:
    conf = dict(
        line.split(None, 1)
        for line in (REPO / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["allow_anonymous"] == "false"
    assert conf["require_certificate"] == "true"
    assert conf["use_identity_as_username"] == "true"
    assert conf["acl_file"].endswith("/acl")


def test_acl_confines_agents_to_their_own_id() -> None:
    rules = [
        line.split()
        for line in (REPO / "deploy/mosquitto/acl").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    patterns = [r for r in rules if r[0] == "pattern"]
    assert patterns, "agents need pattern rules keyed on their CN"
    for _, access, topic in patterns:
        assert topic.startswith("wattrail/v1/%u/"), topic
        if access in ("write", "readwrite"):
            assert not topic.endswith("/ack"), "agents must never write acks"
    # nothing grants everyone a wildcard outside their own id
    assert not any(r[0] == "topic" and r[1] != "read" and "%u" not in r[2] and r[2] != "wattrail/v1/+/ack"
                   for r in rules)


# -- the whole stack (no Docker engine here: checked structurally) ----------------------------
import datetime as dt  # noqa: E402 - the original tests above need none of this
import os  # noqa: E402
import stat  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import typer.main  # noqa: E402

from wattrail.cli import app  # noqa: E402

COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOT = {name for name, svc in SERVICES.items() if svc.get("restart") == "no"}
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)
OURS = sorted(name for name, svc in SERVICES.items() if "build" in svc)
WATTRAIL = typer.main.get_command(app)


def _resolve(args: list[str]) -> tuple[Any, list[str], list[str]]:
    """(click command, its path, its own arguments) for `wattrail ARGS`; fails on a name that
    is no subcommand."""
    cmd, path = WATTRAIL, []
    while getattr(cmd, "commands", None) and args and not args[0].startswith("-"):
        assert args[0] in cmd.commands, f"`wattrail {' '.join(path)}` has no subcommand {args[0]!r}"
        cmd, path, args = cmd.commands[args[0]], [*path, args[0]], args[1:]
    return cmd, path, args


def _check_wattrail_args(args: list[str]) -> Any:
    """Every option is one of the command's, takes the right number of values (ints and floats
    parse), and the positional arguments are as many as it declares."""
    cmd, path, rest = _resolve(args)
    where = f"`wattrail {' '.join(path)}`"
    assert not getattr(cmd, "commands", None) or cmd.invoke_without_command, f"{where} needs a subcommand"
    options = {o: p for p in cmd.params if p.param_type_name == "option"
               for o in (*p.opts, *p.secondary_opts)}
    positionals = [p for p in cmd.params if p.param_type_name == "argument"]
    given: list[str] = []
    it = iter(rest)
    for tok in it:
        if not tok.startswith("-"):
            given.append(tok)
            continue
        name, eq, inline = tok.partition("=")
        assert name in options, f"{where} has no option {name} (it has {sorted(options)})"
        p = options[name]
        if p.is_flag or p.count:
            assert not eq, f"{where} {name} is a flag"
            continue
        value = inline if eq else next(it, None)
        assert value is not None and not value.startswith("--"), f"{where} {name} needs a value"
        number = _number_type(p)
        if number is not None:
            try:
                number(value)
            except ValueError as exc:
                raise AssertionError(f"{where} {name} {value!r} is not a valid {number.__name__}") from exc
    assert len(given) == len(positionals), f"{where}: arguments {given}, declares {positionals}"
    return cmd


def _number_type(p: Any) -> type[int] | type[float] | None:
    """int or float when the option takes one (typer's own parameter model, or click's)."""
    ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    if ann is None:
        ann = {"integer": int, "float": float}.get(getattr(getattr(p, "type", None), "name", ""))
    return ann if ann in (int, float) else None


def _wattrail_commands(name: str) -> list[list[str]]:
    """The argument lists service `name` passes to `wattrail` (its command, and healthchecks
    that call the CLI)."""
    svc = SERVICES[name]
    out = [list(map(str, svc["command"]))] if name in OURS else []
    test = svc.get("healthcheck", {}).get("test", [])
    if test[:2] == ["CMD", "wattrail"]:
        out.append(list(map(str, test[2:])))
    return out


def test_every_service_has_an_image_or_a_build() -> None:
    for name, svc in SERVICES.items():
        assert svc.get("image") or svc.get("build"), name
    for name in OURS:
        assert SERVICES[name]["build"] == ".", name  # the repository's Dockerfile


def test_the_project_services_are_all_there() -> None:
    commands = {name: _resolve(list(map(str, SERVICES[name]["command"])))[1] for name in OURS}
    ran = {" ".join(path) for path in commands.values()}
    assert {"sim", "deploy init", "edge run", "ingest", "analyze", "api"} <= ran, ran
    assert "ingestor" in SERVICES and "pki-init" in ONE_SHOT


@pytest.mark.parametrize("name", [*OURS, "mosquitto"])
def test_commands_are_real_wattrail_subcommands_with_real_options(name: str) -> None:
    for args in _wattrail_commands(name):
        _check_wattrail_args(args)


def test_the_option_checker_catches_mistakes() -> None:
    with pytest.raises(AssertionError, match="no subcommand"):
        _check_wattrail_args(["edge", "launch"])
    with pytest.raises(AssertionError, match="no option --color"):
        _check_wattrail_args(["ingest", "--color", "red"])
    with pytest.raises(AssertionError, match="needs a value"):
        _check_wattrail_args(["sim", "--meters"])
    with pytest.raises(AssertionError, match="arguments"):
        _check_wattrail_args(["pki", "revoke"])
    with pytest.raises(AssertionError, match="not a valid int"):
        _check_wattrail_args(["sim", "--meters", "many"])


def _env_names(cmd: Any) -> set[str]:
    names: set[str] = set()
    for p in cmd.params:
        env = p.envvar
        names.update([env] if isinstance(env, str) else env or [])
    return names


def _api_settings_env() -> set[str]:
    from cloud.api.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    return {str(f.validation_alias) if f.validation_alias else (prefix + n).upper()
            for n, f in Settings.model_fields.items()}


@pytest.mark.parametrize("name", OURS)
def test_every_wattrail_variable_is_read_by_the_service(name: str) -> None:
    env = SERVICES[name].get("environment") or {}
    assert isinstance(env, dict), f"{name}: environment as a mapping, please"
    cmd, path, _ = _resolve(list(map(str, SERVICES[name]["command"])))
    known = _env_names(cmd) | (_api_settings_env() if path == ["api"] else set())
    for var in env:
        if var.startswith("WATTRAIL_"):
            assert var in known, f"{name} sets {var}, which `wattrail {' '.join(path)}` never reads"


def test_services_that_need_the_database_get_its_dsn() -> None:
    for name in OURS:
        cmd, path, _ = _resolve(list(map(str, SERVICES[name]["command"])))
        if "WATTRAIL_DSN" in _env_names(cmd) or path == ["api"]:
            dsn = (SERVICES[name].get("environment") or {}).get("WATTRAIL_DSN", "")
            assert "@timescaledb:5432/" in dsn, name


def test_ingestor_scales() -> None:
    ing = SERVICES["ingestor"]
    assert "container_name" not in ing and not ing.get("ports"), "`--scale ingestor=3` needs both gone"
    env = ing["environment"]
    assert env["WATTRAIL_MQTT_HOST"] == "mosquitto"
    assert env["WATTRAIL_INGESTOR_CERT"].endswith("/services/wattrail-ingestor/tls.crt")


def test_the_ingestor_healthcheck_asks_whether_the_worker_lives() -> None:
    # /metrics kept answering while the worker thread was dead: only /healthz says so
    ing = SERVICES["ingestor"]
    cmd = list(map(str, ing["command"]))
    port = cmd[cmd.index("--metrics-port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(ing["healthcheck"]["test"])


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(name: str) -> None:
    test = SERVICES[name].get("healthcheck", {}).get("test")
    assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} needs a healthcheck"


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on with conditions"
        for dep, spec in deps.items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec.get("condition") == want, f"{name} -> {dep}"
    assert set(SERVICES["pki-init"]["depends_on"]) == {"timescaledb", "simulator"}
    assert "pki-init" in SERVICES["mosquitto"]["depends_on"]  # its certificates come from there


def test_every_named_volume_is_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used: set[str] = set()
    for svc in SERVICES.values():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0]
            if not src.startswith((".", "/", "$")):
                used.add(src)
    assert used <= declared, used - declared
    assert declared <= used, f"declared but unused: {declared - used}"


def test_every_port_is_loopback_only() -> None:
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name
    assert "127.0.0.1:8080:8080" in SERVICES["api"]["ports"]


def test_edge_agents_are_the_simulated_grids_gateways() -> None:
    from firmware_sim.grid_service import build_simulation

    sim_args = list(map(str, SERVICES["simulator"]["command"]))
    meters, seed = int(sim_args[sim_args.index("--meters") + 1]), int(sim_args[sim_args.index("--seed") + 1])
    gateways = set(build_simulation(meters=meters, seed=seed).grid.gateways())
    configs = set()
    for name, svc in SERVICES.items():
        cmd = list(map(str, svc.get("command", [])))
        if cmd[:2] == ["edge", "run"]:
            config = cmd[cmd.index("--config") + 1]
            assert config.startswith("/var/lib/wattrail/agents/") and config.endswith(".toml")
            configs.add(Path(config).stem)
            assert any(v.startswith("edge-outbox:") for v in svc["volumes"]), name
    assert configs == gateways


def test_shared_paths_line_up() -> None:
    init = list(map(str, SERVICES["pki-init"]["command"]))
    sim = list(map(str, SERVICES["simulator"]["command"]))

    def opt(args: list[str], name: str) -> str:
        return args[args.index(name) + 1]

    for o in ("--grid", "--endpoints"):
        assert opt(init, o) == opt(sim, o)
    assert opt(init, "--meter-host") == "simulator" and opt(init, "--mqtt-host") == "mosquitto"
    assert "--host" in sim and opt(sim, "--host") == "0.0.0.0"  # other containers dial it
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["pki-init"]["volumes"]}
    broker_mount = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["mosquitto"]["volumes"]}
    assert mounts[opt(init, "--broker-dir")] == broker_mount["/mosquitto/certs"]
    assert mounts[opt(init, "--pki-dir")] == "pki"


def test_the_bootstrap_writes_every_file_the_broker_reads(tmp_path: Path) -> None:
    from wattrail.commands.deploy import Report, ensure_pki, write_broker_dir

    r = Report()
    ensure_pki(tmp_path / "pki", r, broker_name="mosquitto", broker_dns=["mosquitto"],
               broker_ips=[], agents=[], now=dt.datetime.now(dt.UTC))
    write_broker_dir(tmp_path / "pki", tmp_path / "broker", "mosquitto", r)
    written = {p.name for p in (tmp_path / "broker").iterdir()}
    conf = dict(line.split(None, 1) for line in (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
                .splitlines() if line.strip() and not line.startswith("#"))
    for key in ("cafile", "certfile", "keyfile", "crlfile"):
        assert conf[key].startswith("/mosquitto/certs/") and Path(conf[key]).name in written, key
    health = " ".join(SERVICES["mosquitto"]["healthcheck"]["test"])
    for path in (w for w in health.split() if w.startswith("/mosquitto/certs/")):
        assert Path(path).name in written, path
    assert stat.S_IMODE((tmp_path / "broker" / "server.key").stat().st_mode) == 0o640


def test_dockerfile_builds_a_non_root_wattrail_image() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0].startswith("FROM python:3.11"), lines[0]
    assert 'ENTRYPOINT ["wattrail"]' in lines
    assert any("pip install ." in ln for ln in lines), "the image installs the project"
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    copied = " ".join(ln for ln in lines if ln.startswith("COPY "))
    for pkg in ("protocols", "security", "firmware_sim", "edge", "cloud", "wattrail", "pyproject.toml"):
        assert pkg in copied, f"the Dockerfile does not copy {pkg}"


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".venv", "test-artifacts", ".git", "deploy/state"} <= ignored
    assert any("__pycache__" in i for i in ignored)
    assert os.path.exists(REPO / "README.md") and "README.md" not in ignored  # pyproject's readme
