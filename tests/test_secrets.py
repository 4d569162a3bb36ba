"""A planted encryption key reaches TAO by environment only: never a command line (`ps` shows every user's
argv), nor anything the pipeline writes or shows — specs in the store, logs, manifests, result records,
Prefect's cache records, artifacts and logs. The spec TAO reads names the variable (`${oc.env:…}`), and
OmegaConf itself (TAO's loader) resolves that to the key."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client

import taoflow.launchers.local as local_launcher
from flows import model_flow
from flows.demo import demo_parameters
from taoflow.datasets import write_sample_data
from taoflow.secrets import env_reference

PLANTED = "planted-S3CR3T-7f1c2a"


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def _command_lines() -> dict[int, bytes]:
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                pass
    return lines


# Runs TAO's argv unchanged after stopping itself, so the command line can be read while the process is
# alive whatever the machine's load (a SIGSTOP sent after Popen returns can come after a fast run ended).
_STOP_THEN_RUN = (
    "import os, runpy, signal, sys; os.kill(os.getpid(), signal.SIGSTOP); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def _wait_until_stopped(pid: int, timeout: float = 120.0) -> None:
    """Until the process reports state T (it stopped itself); gated on that state, the bound only catches a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("T", "t"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never stopped itself")


class ScanOnStart:
    """Wraps the launcher's Popen: a TAO (emulator) process stops itself right after it starts (before the
    emulator runs: alive, so its argv is readable), every process's command line is read, and it continues.
    Its argv is TAO's argv behind a `python -c` prefix that stops the process and then runs the module."""

    def __init__(self) -> None:
        self.scans: list[dict[int, bytes]] = []
        self.environ: list[bytes] = []
        self.real = subprocess.Popen

    def __call__(self, argv, *args, **kwargs):
        if "taoflow.emulator" not in argv:
            return self.real(argv, *args, **kwargs)
        module = argv.index("-m")
        proc = self.real([argv[0], "-c", _STOP_THEN_RUN, *argv[module + 1:]], *args, **kwargs)
        _wait_until_stopped(proc.pid)
        try:
            self.scans.append(_command_lines())
            self.environ.append(Path(f"/proc/{proc.pid}/environ").read_bytes())
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        return proc


def test_encryption_key_never_on_a_command_line_nor_written_or_shown(tmp_path, prefect_api, monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", PLANTED)
    scanner = ScanOnStart()
    monkeypatch.setattr(local_launcher.subprocess, "Popen", scanner)
    write_sample_data("rtdetr", tmp_path / "data")
    params = demo_parameters("rtdetr", tmp_path / "data", str(tmp_path / "store"),
                             actions=["train", "evaluate", "export"], automl_policy="off")
    flow_fn, _ = model_flow("rtdetr")
    summary = flow_fn(params)
    assert {r["status"] for r in summary["results"].values()} == {"SUCCESS"}

    assert len(scanner.scans) == 3, "one scan per TAO process, taken while it ran"
    for scan, environ in zip(scanner.scans, scanner.environ, strict=True):
        assert any(b"taoflow.emulator" in argv for argv in scan.values()), "the running process was scanned"
        assert not [pid for pid, argv in scan.items() if PLANTED.encode() in argv]
        assert f"TAO_ENCRYPTION_KEY={PLANTED}".encode() in environ.split(b"\0"), "the key reached TAO by env"

    train_dir = Path(summary["results"]["train"]["results_uri"])
    spec = yaml.safe_load((train_dir / "spec.yaml").read_text())
    assert spec["encryption_key"] == "${oc.env:TAO_ENCRYPTION_KEY}"
    assert _files_containing(tmp_path, PLANTED) == []
    assert PLANTED not in str(summary)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
        logs = client.read_logs()
    assert artifacts and all(PLANTED not in str(a.data) + str(a.description) for a in artifacts)
    assert all(PLANTED not in entry.message for entry in logs)
    assert PLANTED not in (train_dir / "logs" / "train.log").read_text()


def test_the_spec_reference_is_what_omegaconf_resolves(monkeypatch, tmp_path):
    """Evidence from outside our emulator: OmegaConf (TAO's loader) resolves the reference the launcher
    writes to the environment's value, and the emulator reads the same spec the same way."""
    from omegaconf import OmegaConf

    from taoflow.emulator.spec import load_spec

    monkeypatch.setenv("TAO_ENCRYPTION_KEY", PLANTED)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"encryption_key": env_reference("TAO_ENCRYPTION_KEY"),
                                         "train": {"num_epochs": 2}}))
    assert OmegaConf.load(spec_path).encryption_key == PLANTED
    assert load_spec(spec_path, {})["encryption_key"] == PLANTED
