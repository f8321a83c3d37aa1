"""Progress: plain periodic lines without a terminal (no carriage returns), tqdm on one, nothing with -q;
the long-running commands report through it, and ``prolab train`` ends with a readable summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.progress import PlainProgress, progress_bar, set_quiet, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_at_each_quarter_and_on_time_then_a_closing_line():
    clock, out = FakeClock(), io.StringIO()
    bar = PlainProgress(8, "eval val", "img", out, clock=clock, every_seconds=10, every_fraction=0.25)
    for _ in range(8):
        clock.now += 1
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == ["eval val: 2/8 img (25%), 2s elapsed, ~6s left",
                     "eval val: 4/8 img (50%), 4s elapsed, ~4s left",
                     "eval val: 6/8 img (75%), 6s elapsed, ~2s left",
                     "eval val: 8/8 img (100%), done in 8s"]
    clock, out = FakeClock(), io.StringIO()
    bar = PlainProgress(1000, "train", "it", out, clock=clock, every_seconds=10, every_fraction=0.25)
    bar.set_postfix(loss="0.5000")
    for _ in range(3):
        clock.now += 11  # slow steps: a line every 10 s even far from a quarter
        bar.update(1)
    assert out.getvalue().splitlines()[0] == "train: 1/1000 it (0%), 11s elapsed, ~3h03m left, loss=0.5000"
    assert len(out.getvalue().splitlines()) == 3
    bar.close()
    assert out.getvalue().splitlines()[-1] == "train: 3/1000 it (0%), stopped after 33s, loss=0.5000"


def test_terminal_gets_tqdm_log_gets_no_carriage_return_quiet_gets_nothing():
    tty = Terminal()
    with progress_bar(5, "embed", "text", stream=tty) as bar:
        bar.update(5)
    assert "\r" in tty.getvalue() and "embed" in tty.getvalue()
    log = io.StringIO()
    with progress_bar(5, "embed", "text", stream=log) as bar:
        for _ in range(5):
            bar.update(1)
    assert "\r" not in log.getvalue() and log.getvalue().endswith("embed: 5/5 text (100%), done in 0s\n")
    set_quiet(True)
    try:
        quiet = io.StringIO()
        with progress_bar(5, "embed", "text", stream=quiet) as bar:
            bar.update(5)
        assert quiet.getvalue() == ""
    finally:
        set_quiet(False)
    disabled = io.StringIO()
    with progress_bar(5, "embed", "text", enabled=False, stream=disabled) as bar:
        bar.update(5)
    assert disabled.getvalue() == ""
    assert list(track(range(3), "x")) == [0, 1, 2]


# ------------------------------------------------------------------ the commands, without a terminal
def _invoke(args: list[str]):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("progress")
    res = _invoke(["data", "synth", "--layout", "ade20k", "--out-dir", root / "data", "--train", "4", "--val", "2",
                   "--size", "64", "--seen", "3", "--heldout", "1"])
    assert res.exit_code == 0, res.output
    return root / "data"


TRAIN = ["--config", "synth-vit-adapter-nano", "--head", "onehot", "--device", "cpu", "--threads", "1",
         "--set", "schedule.max_iters=2", "--set", "data.batch_size=2", "--set", "data.crop_size=[64,64]",
         "--set", "data.scale=[128,64]", "--set", "model.img_size=64", "--set", "test.scale=[128,64]",
         "--set", "train.ckpt_interval=1", "--set", "train.log_interval=1"]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("run") / "w"
    res = _invoke(["train", "--data-root", data, "--work-dir", work, *TRAIN])
    assert res.exit_code == 0, res.output
    return {"work": work, "result": res}


def test_train_logs_plain_progress_and_ends_with_a_summary(run):
    res, work = run["result"], run["work"]
    assert "\r" not in res.stderr
    assert "train: 2/2 it (100%), done in" in res.stderr
    summary = json.loads((work / "train_result.json").read_text())
    assert summary["iterations"] == 2 and summary["checkpoint"].endswith("iter_2.pth")
    assert summary["work_dir"] == str(work) and summary["seconds"] > 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("trained 2 iterations in ") and f", final loss {summary['loss']:.4f}" in lines[0]
    assert lines[1:] == [f"checkpoint: {summary['checkpoint']}", f"summary:    {work / 'train_result.json'}"]
    assert not res.stdout.lstrip().startswith("{")


def test_eval_predict_check_and_sweep_report_progress_and_q_silences_them(run, data, tmp_path):
    checks = [
        (["eval", "--checkpoint", run["work"], "--data-root", data], "eval val: 2/2 img (100%), done in"),
        (["predict", data / "images" / "validation", "--checkpoint", run["work"],  # a folder: its images
          "--out-dir", tmp_path / "pred"], "predict: 2/2 img (100%), done in"),
        (["data", "check", "--dataset", "ade20k", "--data-root", data], "check val: 2/2 img (100%), done in"),
    ]
    for args, line in checks:
        res = _invoke(args)
        assert res.exit_code == 0, res.output
        assert line in res.stderr and "\r" not in res.stderr, res.stderr
        quiet = _invoke(args + ["-q"])
        assert quiet.exit_code == 0 and line.split(":")[0] + ":" not in quiet.stderr, quiet.stderr
    old_spelling = _invoke(checks[0][0] + ["--no-progress"])
    assert old_spelling.exit_code == 0 and "eval val:" not in old_spelling.stderr
    assert "Warning: --no-progress is deprecated in" in old_spelling.stderr and "; use --quiet" in old_spelling.stderr


def test_cluster_sweep_reports_each_k(tmp_path):
    import numpy as np

    from prolab_cli.embed import EmbeddingSet

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    descriptions = {f"class{c}": [f"text {c} {i}" for i in range(4)] for c in range(3)}
    EmbeddingSet(descriptions, vectors, vectors[:3].copy(), {"model": "synthetic"}).save(tmp_path / "e.safetensors")
    res = _invoke(["cluster", tmp_path / "e.safetensors", "--sweep", "2,3,4,6"])
    assert res.exit_code == 0, res.output
    # a sweep this small ends within the first second: no quarter lines, only the closing one
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("sweep: 4/4 K (100%), done in"), res.stderr
    assert "\r" not in res.stderr and res.stdout.splitlines()[0].split() == ["K", "inertia", "silhouette", "empty",
                                                                             "collisions"]


def test_train_into_a_run_needs_overwrite_which_starts_afresh(run, data):
    work = run["work"]
    (work / "iter_1000.pth").write_bytes(b"stale")  # a later iteration than the new run will reach
    res = _invoke(["train", "--data-root", data, "--work-dir", work, *TRAIN])
    assert res.exit_code == 1 and "continue it with --resume or start afresh with --overwrite" in res.stderr
    assert (work / "iter_1000.pth").exists()
    res = _invoke(["train", "--data-root", data, "--work-dir", work, *TRAIN, "--overwrite", "-q"])
    assert res.exit_code == 0, res.output
    assert not (work / ".overwritten").exists()
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_1.pth", "iter_2.pth"]
    assert (work / "last_checkpoint").read_text().strip() == "iter_2.pth"
    log = [json.loads(line)["iter"] for line in (work / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2]  # the earlier run's lines went with it
    assert "train:" not in res.stderr  # -q
