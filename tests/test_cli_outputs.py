"""Every command that writes results refuses an unwritable destination in one line before doing the work
(training steps, export, timing, building), instead of a traceback after it."""

from __future__ import annotations

import pytest

from edgerestore.cli import main

COMMANDS = {
    "train": ["train", "--profile", "cmudrn-t3", "--clean", "{clean}", "--out", "{bad}/x.pt", "--steps", "2"],
    "train --ship": [
        "train",
        "--profile",
        "cmudrn-t3",
        "--clean",
        "{clean}",
        "--out",
        "{ok}/x.pt",
        "--ship",
        "{bad}/s.pt",
    ],
    "export": ["export", "--profile", "cmudrn-t3", "--out", "{bad}"],
    "bench": ["bench", "--profile", "uffn-tiny", "--frames", "2", "--out", "{bad}"],
    "build --export-root": ["build", "--profile", "uffn-tiny", "--export-root", "{bad}"],
    "build --out": ["build", "--profile", "uffn-tiny", "--out", "{bad}"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_unwritable_destination_is_one_line_before_any_work(name, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")  # a file where a folder is needed (works as root, unlike chmod)
    (tmp_path / "clean").mkdir()  # empty: training would fail later, but the destination is checked first
    fill = {
        "bad": str(tmp_path / "a_file" / "sub"),
        "ok": str(tmp_path / "ok"),
        "clean": str(tmp_path / "clean"),
    }
    code = main([arg.format(**fill) for arg in COMMANDS[name]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "is not a folder; choose a writable --" in err, err
    assert not (tmp_path / "ok").exists()


def test_every_out_option_also_answers_to_dash_o():
    import argparse
    import importlib

    from edgerestore.cli import COMMANDS

    for verb in ("bench", "build", "demo", "eval", "export", "restore", "train", "data"):
        parser = argparse.ArgumentParser()
        importlib.import_module(COMMANDS[verb][0]).add_arguments(parser)
        parsers = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
        outs = [p for p in parsers if "--out" in p._option_string_actions]
        assert outs, verb
        for p in outs:
            assert p._option_string_actions["-o"] is p._option_string_actions["--out"], verb
