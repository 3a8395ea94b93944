import subprocess
import sys

import pytest

import gelora
from gelora.cli import SUBCOMMAND_MODULES, build_parser, main


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert gelora.__version__ in capsys.readouterr().out


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for module in SUBCOMMAND_MODULES:
        assert module.rsplit(".", 1)[-1] in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: gelora" in capsys.readouterr().out


def test_every_subcommand_has_a_handler():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.get_default("func") is not None, name


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "gelora.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"gelora {gelora.__version__}"


def test_library_does_not_import_validation_or_synthetic():
    code = (
        "import sys, gelora, gelora.estimators, gelora.ranks, gelora.lora, gelora.hidden_states;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('validation','synthetic')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
