from __future__ import annotations

from typer.testing import CliRunner

from protocols.encode import encode_reading
from protocols.maps import get_map
from protocols.reading import Reading
from wattrail.cli import app

runner = CliRunner()


def _words(map_name: str) -> str:
    r = Reading("m", 0, import_wh=1_234_000.0, export_wh=0.0, import_varh=10.0, export_varh=0.0,
                v_l1=231.2, v_l2=229.8, v_l3=232.0, i_l1=5.1, i_l2=4.0, i_l3=3.3, i_n=0.7,
                p_w=3000.0, q_var=300.0, pf=0.95, freq_hz=50.01)
    regs = encode_reading(get_map(map_name), r)
    return " ".join(f"{regs.get(a, 0):04x}" for a in range(0x50))


def test_probe_ranks_the_true_encoding_first() -> None:
    res = runner.invoke(app, ["meter", "probe", "--words", _words("sdm630"), "--top", "3"])
    assert res.exit_code == 0, res.output
    rank1 = next(line for line in res.output.splitlines() if "│ 1 " in line)
    assert "sdm630 float32 ABCD" in rank1


def test_probe_needs_a_source() -> None:
    res = runner.invoke(app, ["meter", "probe"])
    assert res.exit_code == 2
    assert "--host" in res.output


def test_probe_rejects_non_hex_words() -> None:
    res = runner.invoke(app, ["meter", "probe", "--words", "12 zz"])
    assert res.exit_code == 2
    assert "hex" in res.output


def test_help_lists_the_subcommands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    assert "meter" in res.output
    assert "version" in res.output
