"""Concurrent pipelines against one Prefect server: how the server's database holds up.

Starts its own `prefect server start` on loopback (SQLite in a fresh PREFECT_HOME, or PostgreSQL with
--database-url), then for each N runs N emulated rtdetr pipelines at once (train + evaluate, local launcher,
each in its own store so nothing is cached) in threads of this process, and prints per N: wall time and its
ratio to N = 1, Prefect API requests per action, HTTP 5xx answers (SQLite's "database is locked" is a 503 the
client retries) and failed pipelines.

With --follow-seconds S it also measures what following one running GPU job costs the server: the work-pool
launcher's state polling (adaptive back-off) over S seconds, against the fixed 2 s polling it replaced.

    python benchmarks/concurrency.py --n 1,4,16,64
    python benchmarks/concurrency.py --n 16,64 --database-url postgresql+asyncpg://prefect:PW@127.0.0.1:5432/prefect
    python benchmarks/concurrency.py --n 1 --follow-seconds 180

Measured 2026-11-28 on a shared 2-CPU machine (wall s, × N=1, 5xx, failed pipelines):
    SQLite:      N=1 3.3 s; N=16 238 s (×72), 46 5xx; N=64 397 s (×120), 226 5xx, 35 of 64 failed
    PostgreSQL:  N=1 1.5 s; N=16 8.6 s (×5.6);        N=64 28.6 s (×18.7), no 5xx, none failed
    following one running job for 120 s: 10 requests with the back-off, 59 with fixed 2 s polling
"""

from __future__ import annotations

import argparse
import contextvars
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ACTIONS = ["train", "evaluate"]


class RequestCounter:
    """Counts every request Prefect's HTTP clients send (httpx), and the 5xx answers."""

    def __init__(self) -> None:
        import httpx

        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        counter = self
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

        def send(client, request, *args, **kwargs):
            response = sync_send(client, request, *args, **kwargs)
            counter.record(response.status_code)
            return response

        async def asend(client, request, *args, **kwargs):
            response = await async_send(client, request, *args, **kwargs)
            counter.record(response.status_code)
            return response

        httpx.Client.send, httpx.AsyncClient.send = send, asend

    def record(self, status: int) -> None:
        with self.lock:
            self.counts["requests"] += 1
            if status >= 500:
                self.counts["5xx"] += 1

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, database_url: str | None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-scheduler", "--no-late-runs"],
        env=env, stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"prefect server exited:\n{(home / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return server, url
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("prefect server did not become healthy in 120 s")


def run_pipelines(n: int, data: Path, work: Path, epochs: int) -> tuple[float, int]:
    """N pipelines at once; returns (wall seconds, failed pipelines)."""
    from flows import model_flow

    flow_fn, params_cls = model_flow("rtdetr")
    failures: list[BaseException] = []

    def one(index: int) -> None:
        params = params_cls(
            datasets={"train": str(data / "train"), "eval": str(data / "eval")}, num_classes=5,
            eval_class_ids=[1, 2, 3, 4], actions=ACTIONS, store=str(work / f"store-{n}-{index}"),
            overrides={"train": {"train.num_epochs": epochs}}, launcher={"name": "local", "emulate": True},
            automl={"policy": "off"})  # pipelines' concurrency, not a sweep's
        try:
            flow_fn(params)
        except BaseException as exc:  # counted and reported, not raised: the benchmark measures failures
            failures.append(exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(one, i)) for i in range(n)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for exc in failures[:3]:
        print(f"    failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    return time.monotonic() - start, len(failures)


def follow_cost(seconds: float, counter: RequestCounter, work: Path) -> None:
    """Requests the work-pool launcher sends while following one attempt that stays running (no worker)."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Cancelled

    from taoflow.runs import ActionRun
    from tasks.workpool import WorkPoolLauncher

    pool = f"bench-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        flow_id = client.create_flow_from_name("tao-action")
        client.create_deployment(flow_id=flow_id, name=pool, work_pool_name=pool, entrypoint="flows/action.py:tao_action")
    for label, options in (("adaptive back-off (1 s → 30 s)", {}),
                           ("fixed 2 s (before)", {"poll_seconds": 2.0, "max_poll_seconds": 2.0})):
        key = uuid.uuid4().hex[:20]
        run = ActionRun(model="rtdetr", action="train", spec={}, image="tao", run_key=key, gpus=0,
                        results_uri=str(work / "follow" / key / "train"))
        launcher = WorkPoolLauncher(str(work / "follow"), deployment=f"tao-action/{pool}", **options)
        handle = launcher.submit(run)
        before = counter.snapshot()["requests"]
        follower = threading.Thread(target=contextvars.copy_context().run, args=(_drain, launcher.events(handle)))
        follower.start()
        time.sleep(seconds)
        used = counter.snapshot()["requests"] - before
        with get_client(sync_client=True) as client:  # end the attempt so the follower returns
            client.set_flow_run_state(handle.flow_run_id, Cancelled(), force=True)
        follower.join()
        print(f"  following one running job for {seconds:.0f} s, {label}: {used} requests "
              f"({used / seconds:.3f}/s; for 64 jobs {64 * used / seconds:.1f}/s)")


def _drain(events) -> None:
    for _ in events:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="1,2,4,8,16,32,64", help="comma-separated pipeline counts")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per pipeline (emulated)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--follow-seconds", type=float, default=0, help="also measure following one GPU job")
    args = parser.parse_args()
    counts = [int(x) for x in args.n.split(",") if x.strip()]

    home = Path(tempfile.mkdtemp(prefix="taoflow-bench-"))
    os.environ.setdefault("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
    os.environ.setdefault("TAOFLOW_HOME", str(home / "taoflow-home"))
    server, url = start_server(home, args.database_url)
    os.environ.update({"PREFECT_API_URL": url, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "ERROR",
                       "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"})
    try:
        from taoflow.datasets import write_sample_data

        data = home / "data"
        write_sample_data("rtdetr", data)
        counter = RequestCounter()
        database = "PostgreSQL" if args.database_url else "SQLite"
        print(f"Prefect server on {database}; rtdetr {'+'.join(ACTIONS)} pipelines, {args.epochs} emulated epochs; "
              f"{os.cpu_count()} CPUs")
        print(f"{'N':>4} {'wall s':>8} {'× N=1':>7} {'requests/action':>16} {'5xx':>6} {'failed':>7}")
        base = None
        for n in counts:
            before = counter.snapshot()
            wall, failed = run_pipelines(n, data, home, args.epochs)
            used = counter.snapshot() - before
            base = base or wall
            per_action = used["requests"] / (n * len(ACTIONS))
            print(f"{n:>4} {wall:>8.1f} {wall / base:>7.2f} {per_action:>16.1f} {used['5xx']:>6} {failed:>7}",
                  flush=True)
        if args.follow_seconds:
            follow_cost(args.follow_seconds, counter, home)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
