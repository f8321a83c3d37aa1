"""Every command against a table of malformed inputs.

Each row runs one ``prolab`` command (in-process, with click's test runner) with one kind of bad input
and checks what a user must see: exit status 1, exactly one line on stderr starting with ``Error:``,
no traceback, and nothing left at the output path the row asked for. Every command and subcommand of
``prolab_cli.cli.COMMANDS`` needs at least one row; a new command without one fails
:func:`test_every_command_has_rows`.

Columns (kinds of bad input): missing file, empty file, wrong type (valid JSON/YAML/pickle of the wrong
shape), truncated file, unreadable file (chmod 000, run under ``setpriv`` without the root capabilities
that ignore permissions), absurd numbers, unknown names, and usage errors (click's own, exit 1 here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.cli import COMMANDS, main
from prolab_cli.embed import EmbeddingSet

REPO = Path(__file__).resolve().parent.parent
KINDS = ("missing", "empty", "wrong-type", "truncated", "unreadable", "absurd", "unknown", "usage")


@dataclass(frozen=True)
class Row:
    command: str  # "embed", "data synth", ...
    kind: str  # one of KINDS
    args: tuple[str, ...]  # after the command; {name} is a fixture file, {out} the output path
    expect: str = ""  # a fragment of the error line (the file, option or name at fault)

    @property
    def id(self) -> str:
        return f"{self.command.replace(' ', '-')}:{self.kind}:{'_'.join(self.args)[:40]}"


def rows() -> list[Row]:
    """The table: (command, kind of bad input, arguments, fragment the one error line must hold)."""
    R = Row
    return [
        # ------------------------------------------------------------------ classes / describe
        R("classes", "missing", ("{nowhere}/classes.txt",), "classes.txt"),
        R("classes", "empty", ("{empty_txt}",), "empty.txt"),
        R("classes", "wrong-type", ("{object_json}",), "object.json"),
        R("classes", "unreadable", ("{locked_txt}",), "locked.txt"),
        R("classes", "unknown", ("nosuch-list",), "nosuch-list"),
        R("label-spaces", "usage", ("extra",), "extra"),
        R("describe", "missing", ("--classes", "{nowhere}/c.txt", "-o", "{out}"), "c.txt"),
        R("describe", "empty", ("--classes", "{empty_txt}", "-o", "{out}"), "empty.txt"),
        R("describe", "wrong-type", ("--classes", "{object_json}", "-o", "{out}"), "object.json"),
        R("describe", "truncated", ("--classes", "{truncated_list_json}", "-o", "{out}"), "trunc_list.json"),
        R("describe", "unreadable", ("--classes", "{locked_txt}", "-o", "{out}"), "locked.txt"),
        R("describe", "absurd", ("--classes", "cityscapes", "--jobs", "0", "-o", "{out}"), "--jobs"),
        R("describe", "absurd", ("--classes", "cityscapes", "--attempts", "0", "-o", "{out}"), "--attempts"),
        R("describe", "unknown", ("--classes", "nosuch-list", "-o", "{out}"), "nosuch-list"),
        R("describe", "missing", ("--classes", "cityscapes", "--llm", "llama-cpp:{nowhere}/m.gguf", "-o", "{out}"),
          "m.gguf"),
        R("describe", "unknown", ("--classes", "cityscapes", "--template", "nosuch", "-o", "{out}"), "nosuch"),
        R("describe", "usage", ("--classes", "cityscapes"), "-o"),
        # ------------------------------------------------------------------ label-space stages
        R("embed", "missing", ("{nowhere}/d.json", "-o", "{out}"), "d.json"),
        R("embed", "empty", ("{empty_json}", "-o", "{out}"), "empty.json"),
        R("embed", "wrong-type", ("{list_json}", "-o", "{out}"), "list.json"),
        R("embed", "truncated", ("{truncated_descriptions}", "-o", "{out}"), "trunc_d.json"),
        R("embed", "unreadable", ("{locked_descriptions}", "-o", "{out}"), "locked_d.json"),
        R("embed", "absurd", ("{descriptions}", "--batch-size", "0", "-o", "{out}"), "--batch-size"),
        R("embed", "unknown", ("{descriptions}", "--classes", "nosuch-list", "-o", "{out}"), "nosuch-list"),
        R("embed", "unknown", ("{descriptions}", "--model", "{nowhere}/model", "-o", "{out}"), "model"),
        R("cluster", "missing", ("{nowhere}/e.safetensors", "-k", "2", "-o", "{out}"), "e.safetensors"),
        R("cluster", "empty", ("{empty_safetensors}", "-k", "2", "-o", "{out}"), "empty.safetensors"),
        R("cluster", "wrong-type", ("{descriptions}", "-k", "2", "-o", "{out}"), "d.json"),
        R("cluster", "truncated", ("{truncated_embeddings}", "-k", "2", "-o", "{out}"), "trunc_e.safetensors"),
        R("cluster", "unreadable", ("{locked_embeddings}", "-k", "2", "-o", "{out}"), "locked_e.safetensors"),
        R("cluster", "absurd", ("{embeddings}", "-k", "0", "-o", "{out}"), "-k"),
        R("cluster", "absurd", ("{embeddings}", "-k", "100", "-o", "{out}"), "100"),
        R("cluster", "absurd", ("{embeddings}", "--sweep", "2,x"), "x"),
        R("cluster", "usage", ("{embeddings}",), "one of them is required"),
        R("cluster", "usage", ("{embeddings}", "-k", "2", "--sweep", "2,3"), "not both"),
        R("cluster", "usage", ("{embeddings}", "-k", "2"), "-k needs -o"),
        R("build", "missing", ("--embeddings", "{nowhere}/e.safetensors", "--clusters", "{clusters}",
                               "--name", "n", "--out-dir", "{out}"), "e.safetensors"),
        R("build", "wrong-type", ("--embeddings", "{clusters}", "--clusters", "{embeddings}",
                                  "--name", "n", "--out-dir", "{out}"), "safetensors"),
        R("build", "truncated", ("--embeddings", "{embeddings}", "--clusters", "{truncated_clusters}",
                                 "--name", "n", "--out-dir", "{out}"), "trunc_c.safetensors"),
        R("build", "empty", ("--embeddings", "{embeddings}", "--clusters", "{clusters}", "--descriptions",
                             "{empty_json}", "--name", "n", "--out-dir", "{out}"), "empty.json"),
        R("build", "unknown", ("--embeddings", "{embeddings}", "--clusters", "{clusters}", "--name", "../up",
                               "--out-dir", "{out}"), "../up"),
        R("pipeline", "missing", ("{nowhere}/p.yaml",), "p.yaml"),
        R("pipeline", "empty", ("{empty_yaml}",), "empty.yaml"),
        R("pipeline", "wrong-type", ("{list_yaml}",), "list.yaml"),
        R("pipeline", "truncated", ("{broken_yaml}",), "broken.yaml"),
        R("pipeline", "unreadable", ("{locked_yaml}",), "locked.yaml"),
        R("inspect", "missing", ("{nowhere}/space",), "space"),
        R("inspect", "unknown", ("nosuch-space",), "nosuch-space"),
        R("inspect", "unknown", ("{artifact}", "--class", "nosuch-class"), "nosuch-class"),
        R("inspect", "absurd", ("{artifact}", "--property", "999"), "999"),
        R("inspect", "absurd", ("{artifact}", "--similar", "class0", "--top", "0"), "--top"),
        R("inspect", "truncated", ("{truncated_artifact}",), "manifest.json"),
        R("import-bank", "missing", ("{nowhere}/b.pth", "--name", "x", "--out-dir", "{out}"), "b.pth"),
        R("import-bank", "empty", ("{empty_pth}", "--name", "x", "--out-dir", "{out}"), "empty.pth"),
        R("import-bank", "wrong-type", ("{list_pth}", "--name", "x", "--out-dir", "{out}"), "list.pth"),
        R("import-bank", "truncated", ("{truncated_bank}", "--name", "x", "--out-dir", "{out}"), "trunc_bank.pth"),
        R("import-bank", "unreadable", ("{locked_bank}", "--name", "x", "--out-dir", "{out}"), "locked_bank.pth"),
        R("import-bank", "unknown", ("{bank}", "--name", "x", "--key", "nosuch-key", "--out-dir", "{out}"),
          "nosuch-key"),
        R("import-bank", "unknown", ("{bank}", "--name", "x", "--classes", "nosuch-list", "--out-dir", "{out}"),
          "nosuch-list"),
        R("export-bank", "missing", ("{nowhere}/space", "-o", "{out}.pth"), "space"),
        R("export-bank", "unknown", ("nosuch-space", "-o", "{out}.pth"), "nosuch-space"),
        R("export-bank", "truncated", ("{truncated_artifact}", "-o", "{out}.pth"), "manifest.json"),
        R("export-bank", "usage", ("{artifact}", "-o", "{out}.pth", "--out-dir", "{out}"), "give one"),
        R("extend", "missing", ("{artifact}", "--descriptions", "{nowhere}/new.json", "--out-dir", "{out}"), "new.json"),
        R("extend", "empty", ("{artifact}", "--descriptions", "{empty_json}", "--out-dir", "{out}"), "empty.json"),
        R("extend", "wrong-type", ("{artifact}", "--descriptions", "{list_json}", "--out-dir", "{out}"), "list.json"),
        R("extend", "truncated", ("{artifact}", "--descriptions", "{truncated_descriptions}", "--out-dir", "{out}"),
          "trunc"),
        R("extend", "unknown", ("nosuch-space", "--keep", "class0", "--out-dir", "{out}"), "nosuch-space"),
        R("extend", "unknown", ("{artifact}", "--keep", "nosuch-class", "--out-dir", "{out}"), "nosuch-class"),
        R("name-properties", "unknown", ("nosuch-space", "--out-dir", "{out}"), "nosuch-space"),
        R("name-properties", "absurd", ("{artifact}", "--members", "0", "--out-dir", "{out}"), "--members"),
        R("name-properties", "missing", ("{artifact}", "--llm", "llama-cpp:{nowhere}/m.gguf", "--out-dir", "{out}"),
          "m.gguf"),
        R("import-properties", "missing", ("{nowhere}/p.json", "--classes", "{classes_txt}", "--out-dir", "{out}"),
          "p.json"),
        R("import-properties", "empty", ("{empty_json}", "--classes", "{classes_txt}", "--out-dir", "{out}"),
          "empty.json"),
        R("import-properties", "wrong-type", ("{list_json}", "--classes", "{classes_txt}", "--out-dir", "{out}"),
          "list.json"),
        R("import-properties", "truncated", ("{truncated_descriptions}", "--classes", "{classes_txt}",
                                             "--out-dir", "{out}"), "trunc_d.json"),
        R("import-properties", "unknown", ("{properties}", "--classes", "nosuch-list", "--out-dir", "{out}"),
          "nosuch-list"),
        R("import-properties", "absurd", ("{properties}", "--classes", "{classes_txt}", "--batch-size", "0",
                                          "--out-dir", "{out}"), "--batch-size"),
        # ------------------------------------------------------------------ cache
        R("cache path", "usage", ("extra",), "extra"),
        R("cache info", "truncated", ("@cache={broken_cache}",), "cache.sqlite"),
        R("cache clear", "absurd", ("--older-than", "-3d", "-y"), "-3d"),
        R("cache clear", "unknown", ("--older-than", "3 fortnights", "-y"), "3 fortnights"),
        R("cache clear", "truncated", ("-y", "@cache={broken_cache}"), "cache.sqlite"),
        # ------------------------------------------------------------------ segmentation
        R("ops build", "unknown", ("--variant", "tpu"), "tpu"),
        R("ops status", "usage", ("--bogus",), "--bogus"),
        R("zoo", "usage", ("nosuch-row",), "nosuch-row"),
        R("models", "absurd", ("--num-classes", "0"), "--num-classes"),
        R("models", "usage", ("--bogus",), "--bogus"),
        R("convert", "missing", ("{nowhere}/m.pth", "{out}.pth"), "m.pth"),
        R("convert", "empty", ("{empty_pth}", "{out}.pth"), "empty.pth"),
        R("convert", "wrong-type", ("{list_pth}", "{out}.pth"), "list.pth"),
        R("convert", "truncated", ("{truncated_bank}", "{out}.pth"), "trunc_bank.pth"),
        R("convert", "unreadable", ("{locked_bank}", "{out}.pth"), "locked_bank.pth"),
        R("convert", "unknown", ("{checkpoint}", "{out}.pth", "--row", "nosuch-row"), "nosuch-row"),
        R("convert", "unknown", ("{checkpoint}", "{out}.pth", "--classes", "nosuch-list"), "nosuch-list"),
        R("data synth", "absurd", ("--out-dir", "{out}", "--train", "0"), "--train"),
        R("data synth", "absurd", ("--out-dir", "{out}", "--size", "0"), "--size"),
        R("data synth", "absurd", ("--out-dir", "{out}", "--size", "100000"), "--size"),
        R("data synth", "unknown", ("--out-dir", "{out}", "--layout", "nosuch-layout"), "nosuch-layout"),
        R("data check", "missing", ("--dataset", "ade20k", "--data-root", "{nowhere}/data"), "data"),
        R("data check", "unknown", ("--dataset", "nosuch-dataset", "--data-root", "{synth}"), "nosuch-dataset"),
        R("data check", "unknown", ("--dataset", "ade20k", "--data-root", "{synth}", "--classes", "nosuch-list"),
          "nosuch-list"),
        R("data check", "empty", ("--dataset", "ade20k", "--data-root", "{synth}", "--classes", "{empty_txt}"),
          "empty.txt"),
        R("extend", "missing", ("{artifact}", "--keep", "{nowhere}/c.txt", "--name", "s", "--out-dir", "{out}"),
          "c.txt"),
        R("extend", "unknown", ("{artifact}", "--keep", "{classes_txt}", "--name", "s", "--out-dir", "{out}"),
          "no-such-class"),
        R("extend", "unknown", ("nosuch-space", "--keep", "{classes_txt}", "--name", "s", "--out-dir", "{out}"),
          "nosuch-space"),
        R("train", "missing", ("--data-root", "{nowhere}/data", "--work-dir", "{out}",
                               "--config", "synth-vit-adapter-nano", "--head", "onehot"), "data"),
        R("train", "unknown", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "nosuch-preset"),
          "nosuch-preset"),
        R("train", "unknown", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "synth-vit-adapter-nano",
                               "--preset", "nosuch-preset", "--head", "onehot"), "nosuch-preset"),
        R("train", "unknown", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "synth-vit-adapter-nano",
                               "--label-space", "nosuch-space"), "nosuch-space"),
        R("train", "absurd", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "synth-vit-adapter-nano",
                              "--set", "schedule.max_iters=-1", "--head", "onehot"), "max_iters"),
        R("train", "absurd", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "synth-vit-adapter-nano",
                              "--set", "data.batch_size=0", "--head", "onehot"), "batch_size"),
        R("train", "absurd", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "synth-vit-adapter-nano",
                              "--set", "train.loss_scale=0", "--head", "onehot"), "train.loss_scale"),
        R("train", "absurd", ("--data-root", "{synth}", "--work-dir", "{out}", "--threads", "0"), "--threads"),
        R("train", "wrong-type", ("--data-root", "{synth}", "--work-dir", "{out}", "--config", "{list_yaml}"),
          "list.yaml"),
        R("eval", "missing", ("--checkpoint", "{nowhere}/c.pth", "--data-root", "{synth}", "-o", "{out}.json"),
          "c.pth"),
        R("eval", "empty", ("--checkpoint", "{empty_pth}", "--data-root", "{synth}", "-o", "{out}.json"),
          "empty.pth"),
        R("eval", "wrong-type", ("--checkpoint", "{list_pth}", "--data-root", "{synth}", "-o", "{out}.json"),
          "list.pth"),
        R("eval", "truncated", ("--checkpoint", "{truncated_bank}", "--data-root", "{synth}", "-o", "{out}.json"),
          "trunc_bank.pth"),
        R("eval", "absurd", ("--checkpoint", "{checkpoint}", "--data-root", "{synth}", "--crop", "0,x"), "0,x"),
        R("eval", "absurd", ("--checkpoint", "{checkpoint}", "--data-root", "{synth}", "--mode", "slide", "--crop",
                             "100000,100000"), "a side above 16384 px"),
        R("predict", "missing", ("{nowhere}/i.png", "--checkpoint", "{checkpoint}", "--out-dir", "{out}"), "i.png"),
        R("predict", "missing", ("{synth}/images/validation", "--checkpoint", "{nowhere}/c.pth", "--out-dir", "{out}"), "c.pth"),
        R("predict", "empty", ("{empty_dir}", "--checkpoint", "{checkpoint}", "--out-dir", "{out}"), "empty_dir"),
        R("predict", "absurd", ("{empty_dir}", "--checkpoint", "{checkpoint}", "--regions", "0",
                                "--out-dir", "{out}"), "--regions"),
        R("mmseg train", "missing", ("{nowhere}/cfg.py", "--work-dir", "{out}"), "cfg.py"),
        R("mmseg test", "missing", ("{nowhere}/cfg.py", "{checkpoint}", "--work-dir", "{out}"), "cfg.py"),
        R("mmseg test", "missing", ("{empty_yaml}", "{nowhere}/c.pth", "--work-dir", "{out}"), "c.pth"),
        R("mmseg test", "absurd", ("{nowhere}/cfg.py", "{nowhere}/c.pth", "--threads", "0"), "--threads"),
    ]


# --------------------------------------------------------------------------------- fixture files
def _write_inputs(root: Path) -> dict[str, str]:
    """Tiny good and bad inputs under ``root``; returns {name: path} for the rows' {name} fields."""
    f: dict[str, Path] = {}

    def put(name: str, filename: str, data: bytes | str) -> Path:
        path = root / filename
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        f[name] = path
        return path

    descriptions = {f"class{c}": [f"text {c} {i}" for i in range(3)] for c in range(3)}
    good_json = json.dumps(descriptions, indent=2)
    put("descriptions", "d.json", good_json)
    put("truncated_descriptions", "trunc_d.json", good_json[: len(good_json) // 2])
    put("locked_descriptions", "locked_d.json", good_json)
    put("empty_json", "empty.json", "")
    put("empty_txt", "empty.txt", "")
    put("empty_yaml", "empty.yaml", "")
    put("empty_safetensors", "empty.safetensors", b"")
    put("empty_pth", "empty.pth", b"")
    put("list_json", "list.json", json.dumps(["a", "b"]))
    put("object_json", "object.json", json.dumps({"road": 1, "sky": 2}))
    put("truncated_list_json", "trunc_list.json", '["road", "sky", "bui')
    put("classes_txt", "classes.txt", "class0\nno-such-class\n")
    put("locked_txt", "locked.txt", "road\nsky\n")
    put("list_yaml", "list.yaml", "- a\n- b\n")
    put("broken_yaml", "broken.yaml", "name: x\nclasses: [road, sky\n")
    put("locked_yaml", "locked.yaml", "name: x\n")
    put("properties", "properties.json", json.dumps({"red": ["class0: red", "class1: red"], "round": ["class2: round"]}))

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((9, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    f["embeddings"] = root / "e.safetensors"
    EmbeddingSet(descriptions, vectors, vectors[:3].copy(), {"model": "synthetic"}).save(f["embeddings"])
    data = f["embeddings"].read_bytes()
    put("truncated_embeddings", "trunc_e.safetensors", data[: len(data) // 2])
    put("locked_embeddings", "locked_e.safetensors", data)
    f["clusters"] = root / "c.safetensors"
    res = CliRunner().invoke(main, ["cluster", str(f["embeddings"]), "-k", "2", "-q", "-o", str(f["clusters"])])
    assert res.exit_code == 0, res.output
    data = f["clusters"].read_bytes()
    put("truncated_clusters", "trunc_c.safetensors", data[: len(data) // 2])

    space = LabelSpace.from_arrays("tiny", list(descriptions), np.eye(3, dtype=np.float32),
                                   np.eye(3, 8, dtype=np.float32), descriptions=descriptions)
    f["artifact"] = space.save(root / "spaces")
    broken = space.save(root / "broken_spaces")
    manifest = broken / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])
    f["truncated_artifact"] = broken

    key = "m_gpt3.5_cluster_2_embeddings_and_labels"
    torch.save({"descriptions": descriptions, key: [torch.randn(2, 8), torch.eye(3, 2)]}, root / "bank.pth")
    f["bank"] = root / "bank.pth"
    data = f["bank"].read_bytes()
    put("truncated_bank", "trunc_bank.pth", data[: len(data) // 2])
    put("locked_bank", "locked_bank.pth", data)
    torch.save([1, 2, 3], root / "list.pth")
    f["list_pth"] = root / "list.pth"
    torch.save({"state_dict": {"w": torch.zeros(2, 2)}}, root / "ckpt.pth")
    f["checkpoint"] = root / "ckpt.pth"

    res = CliRunner().invoke(main, ["data", "synth", "--out-dir", str(root / "synth"), "--train", "1", "--val", "1",
                                    "--size", "32", "--seen", "3", "--heldout", "1", "-q"])
    assert res.exit_code == 0, res.output
    f["synth"] = root / "synth"
    (root / "empty_dir").mkdir()
    f["empty_dir"] = root / "empty_dir"
    (root / "broken_cache").mkdir()
    put("broken_cache_db", "broken_cache/cache.sqlite", b"SQLite format 3\x00" + b"\x01" * 50)
    f["broken_cache"] = root / "broken_cache"
    f["nowhere"] = root / "nowhere"
    for name, path in f.items():
        if name.startswith("locked"):
            path.chmod(0)
    return {name: str(path) for name, path in f.items()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    made = _write_inputs(root)
    yield made
    for name, path in made.items():
        if name.startswith("locked"):
            Path(path).chmod(0o644)


# --------------------------------------------------------------------------------- running a row
def _expand(row: Row, inputs: dict[str, str], out: str) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment of ``row`` (an ``@cache=DIR`` argument sets $PROLAB_CACHE)."""
    args, env = [], {}
    for arg in row.args:
        text = arg.format(out=out, **inputs)
        if text.startswith("@cache="):
            env["PROLAB_CACHE"] = text.split("=", 1)[1]
        else:
            args.append(text)
    return [*row.command.split(), *args], env


def run_row(argv: list[str], env: dict[str, str]) -> dict:
    """Run ``prolab ARGV`` in-process; the exit status, stderr and any exception that escaped click."""
    res = CliRunner().invoke(main, argv, env=env)
    escaped = None if isinstance(res.exception, SystemExit) or res.exception is None else repr(res.exception)
    return {"exit_code": res.exit_code, "stderr": res.stderr, "stdout": res.stdout, "escaped": escaped}


def check(row: Row, outcome: dict, out: Path) -> None:
    where = f"prolab {row.command} ({row.kind}): "
    assert outcome["escaped"] is None, where + outcome["escaped"]
    lines = outcome["stderr"].strip().splitlines()
    assert outcome["exit_code"] == 1, where + f"exit {outcome['exit_code']}\n{outcome['stderr']}{outcome['stdout']}"
    assert len(lines) == 1 and lines[0].startswith("Error: "), where + outcome["stderr"]
    assert "Traceback" not in outcome["stderr"] + outcome["stdout"], where + outcome["stderr"]
    assert row.expect in lines[0], where + f"{row.expect!r} not in {lines[0]!r}"
    left = [str(p) for p in out.parent.rglob("*") if p.is_file()]  # the row's own folder: outputs, temporaries
    assert not left, where + f"left behind: {left}"


_UNREADABLE = [row for row in rows() if row.kind == "unreadable"]


@pytest.mark.parametrize("row", [row for row in rows() if row.kind != "unreadable"], ids=lambda r: r.id)
def test_bad_input(row: Row, inputs, tmp_path):
    out = tmp_path / "out"
    argv, env = _expand(row, inputs, str(out))
    check(row, run_row(argv, env), out)


def test_unreadable_files(inputs, tmp_path):
    """The unreadable column, in one subprocess without the capabilities that let root read anything."""
    if os.geteuid() != 0:
        prefix = []
    elif shutil.which("setpriv"):
        prefix = [shutil.which("setpriv"), "--bounding-set", "-dac_override,-dac_read_search", "--"]
    else:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    jobs = []
    for i, row in enumerate(_UNREADABLE):
        out = tmp_path / f"row{i}" / "out"
        out.parent.mkdir()
        jobs.append((row, out, _expand(row, inputs, str(out))))
    request = json.dumps([[argv, env] for _, _, (argv, env) in jobs])
    proc = subprocess.run([*prefix, sys.executable, __file__], input=request, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    for (row, out, _), outcome in zip(jobs, json.loads(proc.stdout.strip().splitlines()[-1])):
        check(row, outcome, out)
        assert "Permission denied" in outcome["stderr"] or "is not readable" in outcome["stderr"], outcome["stderr"]


def _leaf_commands() -> list[str]:
    """Every runnable command path: the entries of COMMANDS and the subcommands of the groups among them
    (a hidden one is a deprecated spelling of another, which has the rows)."""
    ctx = click.Context(main)
    found = []
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += [f"{name} {sub}" for sub in command.list_commands(ctx) if not command.get_command(ctx, sub).hidden]
        else:
            found.append(name)
    return found


def test_every_command_has_rows():
    covered = {row.command for row in rows()}
    missing = [name for name in _leaf_commands() if name not in covered]
    assert not missing, f"commands without a row in the bad-input table: {missing}"
    assert not covered - set(_leaf_commands()), covered - set(_leaf_commands())
    assert {row.kind for row in rows()} == set(KINDS)


def test_no_command_summary_is_cut():
    """`prolab --help` (and each group's) shows every summary in full, with no '...'."""
    runner = CliRunner()
    for group in [[], *([name] for name in COMMANDS if isinstance(main.get_command(click.Context(main), name),
                                                                  click.Group))]:
        res = runner.invoke(main, [*group, "--help"])
        assert res.exit_code == 0, res.output
        listed = res.stdout.split("Commands:")[1]
        assert "..." not in listed, listed


if __name__ == "__main__":  # run rows sent as JSON on stdin (the unreadable column's subprocess)
    results = [run_row(argv, env) for argv, env in json.loads(sys.stdin.read())]
    print(json.dumps(results))
