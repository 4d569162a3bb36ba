"""benchmarks/automl.py as a user runs it: a surfaces file of one's own (`--surfaces-from`), a table per
surface, and the one TOTAL line at the end; bad input is one `error:` line and exit 2. A tiny budget keeps
it quick — the figures themselves come from running the benchmark, not from tests."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "automl.py"

SURFACES = '''
import math

def bowl(params, epoch, seed):
    """A learning curve whose end peaks at lr = 1e-4 (log scale); seed-free, so fully predictable."""
    quality = math.exp(-0.5 * (math.log10(params["train.optim.lr"]) + 4.0) ** 2)
    return 0.1 + 0.6 * quality * (1 - math.exp(-epoch / 4.0))

SURFACES = {"bowl": ("centerpose", "val_3DIoU", "maximize", bowl),
            "bowl_loss": ("centerpose", "val_loss", "minimize", lambda p, e, s: 1.0 - bowl(p, e, s))}
'''


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          check=False)


def test_surfaces_from_a_file_end_with_the_total_line(tmp_path) -> None:
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(SURFACES))
    proc = _run("--surfaces-from", str(path), "--seeds", "2", "--methods", "ours,random", "--skip-cpu",
                "--cap-trials", "8", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"TOTAL ours/random=\d+\.\d\d ours/nvidia-best=n/a worst-surface ours/random=\d+\.\d\d",
                        lines[-1]), lines[-1]
    out = proc.stdout
    assert "bowl  (centerpose space, val_3DIoU max)" in out and "bowl_loss  (centerpose space, val_loss min)" in out
    assert re.search(r"^  ours\s+\S+\s+\d+\s+\d/2", out, re.M) and re.search(r"^  random\s+\S+\s+\d+\s+\d/2", out, re.M)

    only = _run("--surfaces-from", str(path), "--surface", "bowl_loss", "--seeds", "1", "--methods", "ours,random",
                "--skip-cpu", "--cap-trials", "8", "--jobs", "1")
    assert only.returncode == 0 and "bowl_loss" in only.stdout and "bowl  (" not in only.stdout


def test_bad_input_is_one_error_line_and_exit_2(tmp_path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    wrong_model = tmp_path / "wrong.py"
    wrong_model.write_text("SURFACES = {'a': ('yolo', 'm', 'maximize', lambda p, e, s: 0.0)}\n")
    for args, text in ((["--surfaces-from", str(tmp_path / "missing.py")], "no such file"),
                       (["--surfaces-from", str(empty)], "defines no SURFACES"),
                       (["--surfaces-from", str(wrong_model)], "names model 'yolo'"),
                       (["--surface", "nope"], "no surface nope"),
                       (["--methods", "ours,magic"], "unknown or unavailable method(s) magic")):
        proc = _run(*args, "--skip-cpu", "--seeds", "1")
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().startswith("error: ") and text in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
