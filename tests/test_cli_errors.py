"""Every user error and known infrastructure failure of `taoflow run` ends as `error:` lines and exit 2 — no
traceback, each problem once — and before any Prefect server starts (PREFECT_API_URL points at a port where
nothing listens, so a command that reached Prefect would fail differently). Storage failures are checked
against moto's S3 server on loopback (one with IAM enforced for access denied) and against real read-only
and full filesystems (tmpfs mounts; skipped where this process may not mount)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flows.cli import main  # noqa: F401  (registers run/demo/tune/server on the app)
from taoflow.cli import _register, run_cli
from taoflow.datasets import write_sample_data
from tests.s3server import BUCKET, free_port

_register()
TAOFLOW = str(Path(sys.executable).parent / "taoflow")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rtdetr-data")
    write_sample_data("rtdetr", root)
    return root


@pytest.fixture(autouse=True)
def no_prefect_reachable(monkeypatch, tmp_path):
    """Preflight must fail before Prefect: a command that got that far would hit a dead API URL."""
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata credential lookups
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # fsspec reuses a filesystem made with another test's credentials
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def _run(capsys, *args: str) -> tuple[int, str]:
    code = run_cli(list(args))
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _args(train: str, eval_: str, store: str, *extra: str) -> list[str]:
    return ["run", "rtdetr", "--data", f"train={train}", "--data", f"eval={eval_}", "--set",
            "dataset.num_classes=5", "--store", store, "--automl", "off", *extra]


def _assert_user_error(code: int, out: str, *needles: str) -> None:
    assert code == 2, out
    assert out.count("error:") == 1 and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def test_missing_data_folder(capsys, tmp_path):
    code, out = _run(capsys, *_args(str(tmp_path / "nope" / "train"), str(tmp_path / "nope" / "eval"),
                                     str(tmp_path / "store")))
    _assert_user_error(code, out, f"dataset 'train' for rtdetr: {tmp_path / 'nope' / 'train'} is not a folder",
                       "hint: `taoflow sample-data rtdetr DIR`")
    assert out.count("is not a folder") == 2, "each role's problem once, not once per action"


def test_wrong_layout_unknown_role_and_bad_value_each_reported_once(capsys, data, tmp_path):
    (tmp_path / "flat").mkdir()
    code, out = _run(capsys, "run", "rtdetr", "--data", f"train={tmp_path / 'flat'}", "--data",
                     f"eval={data / 'eval'}", "--data", f"validation={data / 'eval'}", "--set",
                     "dataset.num_classes=five", "--store", str(tmp_path / "store"))
    _assert_user_error(code, out, "missing", "unknown dataset role(s) validation")
    assert out.count("validation") == 1, out
    assert out.count("dataset.num_classes") == 1, "one line naming every step it concerns"


def test_no_tao_installed(capsys, data, tmp_path):
    code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), str(tmp_path / "store"),
                                    "--no-emulate"))
    _assert_user_error(code, out, "TAO's `rtdetr` entry point is not installed here")
    assert out.count("entry point") == 1


def test_no_docker_daemon(capsys, data, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "k")
    code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), str(tmp_path / "store"),
                                    "--launcher", "docker"))
    _assert_user_error(code, out, "cannot reach the docker daemon", "--launcher local")


def test_unknown_option_and_command_are_usage_errors():
    """Through the real console script: typer's vendored click exceptions become usage messages."""
    for argv in ([TAOFLOW, "run", "rtdetr", "--bogus"], [TAOFLOW, "modles"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done
        assert "Usage: taoflow" in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_a_missing_data_folder_from_the_console_script(data, tmp_path):
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    done = subprocess.run([TAOFLOW, *_args(str(tmp_path / "missing"), str(data / "eval"), str(tmp_path / "s"))],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr, done


# ----------------------------------------------------------------------------------------------- S3


def test_s3_dataset_without_credentials(capsys, s3_root, data, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out = _run(capsys, *_args(f"{s3_root}/train", str(data / "eval"), str(tmp_path / "store")))
    _assert_user_error(code, out, f"dataset 'train' of rtdetr at {s3_root}/train: no S3 credentials",
                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")


def test_s3_store_unknown_bucket(capsys, s3_root, data):
    store = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/tao"
    code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), store))
    _assert_user_error(code, out, f"artifact store at {store}: the bucket", "does not exist")


def test_s3_store_unreachable_endpoint(capsys, s3_root, data, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), f"s3://{BUCKET}/tao"))
    _assert_user_error(code, out, f"cannot reach the S3 endpoint {endpoint}", "AWS_ENDPOINT_URL")


def test_s3_store_access_denied(capsys, data, tmp_path, monkeypatch):
    """moto with IAM enforced: a user allowed to list and read, not to write."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "moto server did not start"
                time.sleep(0.2)
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "admin",
                 "aws_secret_access_key": "admin"}
        boto3.client("s3", **admin).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}]}))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        for name, value in {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                            "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
                            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
            monkeypatch.setenv(name, value)
        code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), "s3://locked/tao"))
    finally:
        os.killpg(server.pid, 9)
        server.wait(30)
    _assert_user_error(code, out, "artifact store at s3://locked/tao: access denied", "s3:PutObject")


# ----------------------------------------------------------------------------------------------- local store


def _mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")


def test_read_only_store(capsys, data, tmp_path):
    mount = tmp_path / "ro"
    _mount_tmpfs(mount, "ro,size=1m")
    try:
        code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), str(mount / "store")))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    _assert_user_error(code, out, f"artifact store at {mount / 'store'}: cannot write", "Read-only file system")


def test_full_store(capsys, data, tmp_path):
    mount = tmp_path / "full"
    _mount_tmpfs(mount, "size=64k")
    try:
        with open(mount / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"x" * 4096)
            except OSError:
                pass  # full
        code, out = _run(capsys, *_args(str(data / "train"), str(data / "eval"), str(mount)))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    _assert_user_error(code, out, f"artifact store at {mount}: the disk is full", "No space left on device")


def test_tune_and_demo_preflight_too(capsys, tmp_path, data):
    code, out = _run(capsys, "tune", "rtdetr", "--data", f"train={tmp_path / 'gone'}", "--data",
                     f"eval={data / 'eval'}", "--set", "dataset.num_classes=5", "--store", str(tmp_path / "s"))
    _assert_user_error(code, out, "dataset 'train' for rtdetr")
    code, out = _run(capsys, "demo", "rtdetr", "--dir", "/proc/no-demo-here")
    _assert_user_error(code, out, "demo folder at /proc/no-demo-here: cannot write", "(--dir)")
