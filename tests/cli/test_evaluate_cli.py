"""`mkunet evaluate`: several runs are given by repeating ``--runs`` (as documented)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import mkunet.train.evaluate as evaluate_module
from mkunet.cli import app


class _Evaluation:
    def write(self, out):
        return {"tables": Path(out) / "tables.md"}

    def to_markdown(self) -> str:
        return "| table |"


def test_runs_repeated(monkeypatch, tmp_path):
    seen = {}

    def fake_evaluate_runs(runs, data, **kwargs):
        seen["runs"], seen["data"] = list(runs), data
        return _Evaluation()

    monkeypatch.setattr(evaluate_module, "evaluate_runs", fake_evaluate_runs)
    args = ["evaluate", "--runs", "runs/mk", "--runs", "runs/unet", "--data", "cohort", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert seen["runs"] == [Path("runs/mk"), Path("runs/unet")] and seen["data"] == Path("cohort")
    # the form the README used to show is refused by the parser (typer options take one value each)
    res = CliRunner().invoke(app, ["evaluate", "--runs", "a", "b", "--data", "c", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unexpected extra argument" in res.output


def test_bad_checkpoint_is_one_line(tmp_path):
    res = CliRunner().invoke(
        app, ["evaluate", "--runs", "a", "--data", "c", "--out", str(tmp_path), "--checkpoint", "final"]
    )
    assert res.exit_code == 2 and "'final'" in res.output
