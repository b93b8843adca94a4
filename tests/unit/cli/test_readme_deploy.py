"""The README's deployment docs cannot drift: its agent TOML examples load with the agent's own
config loader, its curl paths are routes of the API, its commands are real subcommands."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest

from edge.config import load_config

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


METERS = _section("Configure your own meters")
TOMLS = _blocks(METERS, "toml")


def test_there_are_the_two_sdm630_examples() -> None:
    assert len(TOMLS) == 2


@pytest.mark.parametrize("text", TOMLS, ids=["rs485-rtu", "tcp-gateway"])
def test_agent_toml_examples_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.meters and all(m.map == "sdm630" for m in cfg.meters)
    assert len({m.unit_id for m in cfg.meters}) == len(cfg.meters)  # one address per meter
    assert len({m.link for m in cfg.meters}) == 1  # one bus / one gateway
    if cfg.meters[0].transport == "rtu":
        m = cfg.meters[0]
        assert (m.serial_port, m.baudrate, m.parity) == ("/dev/ttyUSB0", 9600, "N")
    else:
        assert {(m.transport, m.port) for m in cfg.meters} == {("tcp", 502)}


@functools.cache
def _api_paths() -> list[re.Pattern[str]]:
    from cloud.api.config import Settings
    from cloud.api.main import create_app

    schema = create_app(Settings(dsn="postgresql://127.0.0.1:1/none")).openapi()
    return [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$") for p in schema["paths"]]


CURL_PATHS = sorted(set(re.findall(r"\$API(/[^\s\"?]*)", _section("API"))))


def test_the_api_section_has_the_promised_examples() -> None:
    paths = " ".join(CURL_PATHS)
    for what in ("/v1/loss", "/v1/suspects", "/readings", "/v1/audit/export"):
        assert what in paths, what
    assert "token create" in _section("API")


@pytest.mark.parametrize("path", CURL_PATHS)
def test_every_curl_path_is_an_api_route(path: str) -> None:
    assert any(p.match(path) for p in _api_paths()), f"README curls {path}, which the API lacks"


def _wattrail_lines() -> list[list[str]]:
    text = "\n".join(_blocks(_section("Deploy with Docker Compose") + METERS + _section("API"), "sh"))
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for part in re.split(r"&&|\$\(|\)", line):
            words = shlex.split(part)
            if "wattrail" in words and words[0] in ("wattrail", "docker"):
                out.append(words[words.index("wattrail") + 1:])
    return out


@pytest.mark.parametrize("args", _wattrail_lines(), ids=lambda a: " ".join(a[:2]))
def test_readme_commands_are_real(args: list[str]) -> None:
    from tests.unit.test_deploy_files import _check_wattrail_args

    _check_wattrail_args(args)
