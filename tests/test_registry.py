"""The model registry on a local store and on s3:// (moto's S3 server on loopback, through s3fs): first
promotion, better / worse / parity-failing challengers, concurrent promotions, rollback, a registry written by
a newer format, a champion whose files were deleted, and warm start."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from taoflow.errors import UserError
from taoflow.promotion import MetricRule, PromotionError, PromotionPolicy
from taoflow.registry import (
    ChampionFilesMissing,
    ConditionalWritesUnsupported,
    ModelRegistry,
    RegistryFormatError,
    RegistryNotFound,
    create_exclusive,
)
from taoflow.registry import exclusive as exclusive_module
from taoflow.store import ArtifactStore
from tests.registry_versions import make_version
from tests.s3server import any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)

RULE = MetricRule("val_mAP", "maximize")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry(any_store_root) -> ModelRegistry:
    return ModelRegistry(any_store_root)


def event_names(registry: ModelRegistry, model: str = "rtdetr", name: str = "prod") -> list[str]:
    folder = registry.store.join(registry.folder(model, name), "events")
    return [e.path for e in registry.store.list_files(folder, include_dirs=False)]


def test_first_promotion_writes_champion_history_and_pointer(registry):
    store = registry.store
    v1 = make_version(store, "aaaaaa01", 0.60, 0.597)
    outcome = registry.promote(v1, "prod", rule=RULE, context={"flow_run": "nightly-1"})
    assert outcome.promoted and outcome.written
    assert outcome.event.seq == 1 and outcome.event.kind == "promoted"
    assert outcome.event.previous_champion is None
    assert "first model for this name: test_mAP 0.6000" in outcome.event.reason
    assert registry.champion("rtdetr", "prod") == v1
    assert event_names(registry) == ["00000001.json"]
    # the layout deployments read: a fixed champion.json beside the history
    pointer = store.read_json(registry.champion_uri("rtdetr", "prod"))
    assert pointer["seq"] == 1 and pointer["champion"]["engine"] == v1.engine and pointer["format"] == 1
    record = store.read_json(store.join(registry.folder("rtdetr", "prod"), "events", "00000001.json"))
    assert record["subject"]["run_keys"] == {"train": "aaaaaa01-t", "export": "aaaaaa01-x",
                                             "gen_trt_engine": "aaaaaa01"}
    assert record["context"] == {"flow_run": "nightly-1"} and record["by"] and record["at"].endswith("Z")
    assert record["decision"]["checks"][1]["name"] == "parity"
    assert [s.name for s in registry.names()] == ["prod"]


def test_better_promoted_worse_rejected_parity_failure_rejected(registry):
    store = registry.store
    registry.promote(make_version(store, "aaaaaa01", 0.60), "prod", rule=RULE)
    policy = PromotionPolicy(margin=0.01)

    better = registry.promote(make_version(store, "bbbbbb02", 0.63, 0.628), "prod", rule=RULE, policy=policy)
    assert better.promoted and better.event.previous_champion == "aaaaaa01"

    worse = registry.promote(make_version(store, "cccccc03", 0.62, 0.62), "prod", rule=RULE, policy=policy)
    assert not worse.promoted and worse.written
    assert worse.decision.reasons == [
        "test_mAP 0.6200 vs champion bbbbbb02 0.6300: -0.0100 (higher is better); not better than the champion"]

    drift = registry.promote(make_version(store, "dddddd04", 0.70, 0.61), "prod", rule=RULE, policy=policy)
    assert not drift.promoted
    assert drift.decision.checks[0].passed  # PyTorch improved by 0.07 ...
    assert drift.decision.reasons == [  # ... but the engine does not behave like the model
        "TensorRT parity (fp16): |AP 0.6100 - test_mAP 0.7000| = 0.0900 > tolerance 0.0100"]

    assert registry.champion("rtdetr", "prod").version_id == "bbbbbb02"
    history = registry.history("rtdetr", "prod")
    assert [(e.seq, e.kind, e.subject.version_id) for e in history] == [
        (1, "promoted", "aaaaaa01"), (2, "promoted", "bbbbbb02"), (3, "rejected", "cccccc03"),
        (4, "rejected", "dddddd04")]
    assert store.read_json(registry.champion_uri("rtdetr", "prod"))["seq"] == 4


def test_champion_is_reevaluated_on_the_challengers_eval_data(registry):
    store = registry.store
    registry.promote(make_version(store, "aaaaaa01", 0.60, digest="eval-1"), "prod", rule=RULE)
    challenger = make_version(store, "bbbbbb02", 0.58, digest="eval-2")  # new, harder eval data
    with pytest.raises(PromotionError, match="evaluate the champion's checkpoint on the challenger's eval data"):
        registry.promote(challenger, "prod", rule=RULE)
    seen = []

    def evaluate_champion(champion):
        seen.append(champion.checkpoint)
        return {"test_mAP": "0.55"}  # the champion scores lower on the new data too (a string, as TAO writes)

    outcome = registry.promote(challenger, "prod", rule=RULE, evaluate_champion=evaluate_champion)
    assert seen == [registry.history("rtdetr", "prod")[0].champion.checkpoint]
    assert outcome.promoted and outcome.decision.champion_value == pytest.approx(0.55)


def test_promoting_the_champion_again_records_nothing(registry):
    v1 = make_version(registry.store, "aaaaaa01", 0.60)
    registry.promote(v1, "prod", rule=RULE)
    again = registry.promote(v1, "prod", rule=RULE)
    assert again.promoted and not again.written and "already is the champion" in again.decision.summary()
    rejected = make_version(registry.store, "bbbbbb02", 0.50)
    first = registry.promote(rejected, "prod", rule=RULE)
    retry = registry.promote(rejected, "prod", rule=RULE)  # a retried task: the rejection is not duplicated
    assert not retry.written and retry.event.seq == first.event.seq
    assert event_names(registry) == ["00000001.json", "00000002.json"]


def test_concurrent_promotion_second_sees_the_first(registry):
    """Two threads read the same champion; B commits first, then A tries the same sequence number, loses,
    re-reads, and decides against B (the new champion) rather than the champion it first evaluated."""
    store = registry.store
    registry.promote(make_version(store, "aaaaaa01", 0.60), "prod", rule=RULE)
    a = make_version(store, "aaaaaa02", 0.65)
    b = make_version(store, "bbbbbb02", 0.62)
    b_committed = threading.Event()
    a_evaluated: list[str] = []
    kpis = {"aaaaaa01": 0.60, "bbbbbb02": 0.62}

    def evaluate_for_a(champion):
        a_evaluated.append(champion.version_id)
        if len(a_evaluated) == 1:
            assert b_committed.wait(60), "B never committed"
        return {"test_mAP": kpis[champion.version_id]}

    outcomes = {}

    def run_a():
        outcomes["a"] = registry.promote(a, "prod", rule=RULE, evaluate_champion=evaluate_for_a)

    thread = threading.Thread(target=run_a)
    thread.start()
    outcomes["b"] = registry.promote(b, "prod", rule=RULE)
    b_committed.set()
    thread.join(60)
    assert outcomes["b"].promoted and outcomes["b"].event.seq == 2
    assert a_evaluated == ["aaaaaa01", "bbbbbb02"]  # A re-evaluated the new champion after losing the race
    assert outcomes["a"].promoted and outcomes["a"].event.seq == 3
    assert outcomes["a"].event.previous_champion == "bbbbbb02"
    assert "vs champion bbbbbb02 0.6200" in outcomes["a"].event.reason

    # And the other way round: a worse challenger that read the old champion is rejected against the new one.
    c = make_version(store, "cccccc03", 0.64)
    c_evaluated: list[str] = []
    c_read, d_committed = threading.Event(), threading.Event()

    def evaluate_for_c(champion):
        c_evaluated.append(champion.version_id)
        if len(c_evaluated) == 1:
            c_read.set()
            assert d_committed.wait(60)
        return {"test_mAP": {"aaaaaa02": 0.65, "dddddd04": 0.70}[champion.version_id]}

    def run_c():
        outcomes["c"] = registry.promote(c, "prod", rule=RULE, evaluate_champion=evaluate_for_c)

    kpis["aaaaaa02"] = 0.65
    thread = threading.Thread(target=run_c)
    thread.start()
    assert c_read.wait(60)  # C has read champion aaaaaa02 before D lands
    outcomes["d"] = registry.promote(make_version(store, "dddddd04", 0.70), "prod", rule=RULE,
                                     evaluate_champion=lambda champion: {"test_mAP": kpis[champion.version_id]})
    d_committed.set()
    thread.join(60)
    assert outcomes["d"].promoted
    assert c_evaluated == ["aaaaaa02", "dddddd04"]
    assert not outcomes["c"].promoted and outcomes["c"].event.previous_champion == "dddddd04"
    assert "vs champion dddddd04 0.7000" in outcomes["c"].event.reason
    assert registry.champion("rtdetr", "prod").version_id == "dddddd04"


def test_many_racing_promotions_keep_one_gapless_history(tmp_path):
    """Six threads read the same champion, then race for the same sequence number (local store: hard links).
    Every challenger is recorded exactly once, each decision against the champion of the event before it,
    and the best challenger ends up champion whatever the order."""
    registry = ModelRegistry(tmp_path / "store")
    store = registry.store
    registry.promote(make_version(store, "base0000", 0.50), "prod", rule=RULE)
    values = [0.55, 0.61, 0.58, 0.66, 0.52, 0.63]
    challengers = [make_version(store, f"chal{i:04d}", v) for i, v in enumerate(values)]
    truth = {c.version_id: v for c, v in zip(challengers, values, strict=True)} | {"base0000": 0.50}
    everyone_read = threading.Barrier(len(challengers))
    first_call = threading.local()
    calls = []

    def evaluate(champion):
        calls.append(champion.version_id)
        if not getattr(first_call, "done", False):
            first_call.done = True
            everyone_read.wait(60)
        return {"test_mAP": truth[champion.version_id]}

    errors = []

    def run(challenger):
        try:
            registry.promote(challenger, "prod", rule=RULE, evaluate_champion=evaluate)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in challengers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    history = registry.history("rtdetr", "prod")
    assert [e.seq for e in history] == list(range(1, 8))
    assert sorted(e.subject.version_id for e in history[1:]) == sorted(truth.keys() - {"base0000"})
    for before, event in itertools.pairwise(history):
        assert event.previous_champion == before.champion.version_id
        assert event.decision["champion"] == before.champion.version_id
    assert registry.champion("rtdetr", "prod").version_id == "chal0003"  # 0.66, the best
    assert len(calls) >= 6 + 5  # all six read event 1; five lost the race for event 2 and decided again


def test_a_killed_promotion_leaves_nothing_that_blocks_the_next(tmp_path):
    """No lock to go stale: a promotion SIGKILLed while evaluating the champion leaves the registry usable."""
    root = tmp_path / "store"
    registry = ModelRegistry(root)
    registry.promote(make_version(registry.store, "aaaaaa01", 0.60), "prod", rule=RULE)
    make_version(registry.store, "bbbbbb02", 0.70)
    child = (
        "import sys\n"
        "from taoflow.promotion import MetricRule\n"
        "from taoflow.registry import ModelRegistry\n"
        "from tests.registry_versions import make_version\n"
        f"registry = ModelRegistry({str(root)!r})\n"
        "version = make_version(registry.store, 'bbbbbb02', 0.70)\n"
        "def evaluate(champion):\n"
        "    print('evaluating', flush=True)\n"
        "    sys.stdin.read()\n"
        "registry.promote(version, 'prod', rule=MetricRule('val_mAP', 'maximize'), evaluate_champion=evaluate)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "evaluating"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    outcome = registry.promote(make_version(registry.store, "cccccc03", 0.65), "prod", rule=RULE)
    assert outcome.promoted and outcome.event.seq == 2
    assert event_names(registry) == ["00000001.json", "00000002.json"]


def test_exclusive_create_has_one_winner(any_store_root):
    store = ArtifactStore(any_store_root)
    uri = store.join(store.root, "models", "x", "y", "events", "00000001.json")
    assert create_exclusive(store, uri, b"first")
    assert not create_exclusive(store, uri, b"second")
    assert store.read_bytes(uri) == b"first"
    if store.is_local:
        assert sorted(os.listdir(os.path.dirname(uri))) == ["00000001.json"]  # no temp file left behind


def test_an_s3_endpoint_that_ignores_if_none_match_is_refused(s3_root, monkeypatch):
    """Simulated: the real moto server honours If-None-Match, so this wraps the client to drop the condition,
    as an endpoint without conditional-write support would."""
    store = ArtifactStore(s3_root)
    monkeypatch.setattr(exclusive_module, "_verified", set())
    real = store.fs.pipe_file
    monkeypatch.setattr(store.fs, "pipe_file", lambda path, data, mode="overwrite", **kw: real(path, data, **kw))
    registry = ModelRegistry(store)
    with pytest.raises(ConditionalWritesUnsupported, match="ignored 'If-None-Match: \\*'"):
        registry.promote(make_version(store, "aaaaaa01", 0.6), "prod", rule=RULE)
    assert registry.names() == []


def test_rollback_moves_the_pointer_and_records_why(registry):
    store = registry.store
    for key, value in (("aaaaaa01", 0.60), ("bbbbbb02", 0.62), ("cccccc03", 0.64)):
        registry.promote(make_version(store, key, value), "prod", rule=RULE)
    event = registry.rollback("rtdetr", "prod", reason="field reports: false positives at night")
    assert event.kind == "rolled_back" and event.seq == 4
    assert event.champion.version_id == "bbbbbb02" and event.previous_champion == "cccccc03"
    assert event.reason == "rolled back from cccccc03 to bbbbbb02: field reports: false positives at night"
    assert registry.champion("rtdetr", "prod").version_id == "bbbbbb02"
    assert store.read_json(registry.champion_uri("rtdetr", "prod"))["champion"]["engine"].endswith(
        "bbbbbb02/gen_trt_engine/model.engine")

    to_first = registry.rollback("rtdetr", "prod", to="aaaaaa01-t")  # any run key of the version
    assert to_first.champion.version_id == "aaaaaa01"
    with pytest.raises(PromotionError, match="already is the champion"):
        registry.rollback("rtdetr", "prod", to="aaaaaa")
    with pytest.raises(PromotionError, match="is not a run key of any former champion"):
        registry.rollback("rtdetr", "prod", to="ffffff")
    with pytest.raises(RegistryNotFound, match="no registry entry rtdetr/staging"):
        registry.rollback("rtdetr", "staging")


def test_a_champion_with_deleted_files_is_refused_and_can_be_rolled_back(registry):
    store = registry.store
    v1 = make_version(store, "aaaaaa01", 0.60)
    v2 = make_version(store, "bbbbbb02", 0.62)
    registry.promote(v1, "prod", rule=RULE)
    registry.promote(v2, "prod", rule=RULE)
    store.fs.rm_file(v2.engine if not store.is_local else store.local_path(v2.engine))
    with pytest.raises(ChampionFilesMissing) as info:
        registry.promote(make_version(store, "cccccc03", 0.70), "prod", rule=RULE)
    message = str(info.value)
    assert f"the champion bbbbbb02 has files missing from the store: engine {v2.engine}" in message
    assert "nothing was compared or changed" in message
    assert len(registry.history("rtdetr", "prod")) == 2  # nothing recorded
    # the remedy: roll back to a champion whose files are there
    assert registry.rollback("rtdetr", "prod").champion.version_id == "aaaaaa01"
    assert registry.promote(make_version(store, "cccccc03", 0.70), "prod", rule=RULE).promoted

    store.fs.rm_file(v1.checkpoint if not store.is_local else store.local_path(v1.checkpoint))
    with pytest.raises(ChampionFilesMissing, match="checkpoint"):
        registry.rollback("rtdetr", "prod", to="aaaaaa01")


def test_a_registry_of_a_newer_format_is_refused_not_corrupted(registry):
    store = registry.store
    registry.promote(make_version(store, "aaaaaa01", 0.60), "prod", rule=RULE)
    newer = store.read_json(store.join(registry.folder("rtdetr", "prod"), "events", "00000001.json"))
    newer.update(format=2, seq=2, id="from-the-future")
    newer_uri = store.join(registry.folder("rtdetr", "prod"), "events", "00000002.json")
    store.write_json_atomic(newer_uri, newer)
    before = {e.path: e.version for e in store.list_files(registry.folder("rtdetr", "prod"), include_dirs=False)}
    challenger = make_version(store, "bbbbbb02", 0.70)
    for attempt in (lambda: registry.promote(challenger, "prod", rule=RULE),
                    lambda: registry.rollback("rtdetr", "prod", to="aaaaaa01"),
                    lambda: registry.history("rtdetr", "prod"),
                    lambda: registry.champion("rtdetr", "prod")):
        with pytest.raises(RegistryFormatError, match=r"newer taoflow \(registry format 2; this taoflow reads "
                                                      r"format 1 and older\)"):
            attempt()
    after = {e.path: e.version for e in store.list_files(registry.folder("rtdetr", "prod"), include_dirs=False)}
    assert after == before

    # a newer layout announces itself in the name's marker
    store.write_json_atomic(store.join(registry.folder("rtdetr", "dev"), "registry.json"), {"format": 3})
    with pytest.raises(RegistryFormatError, match="registry format 3"):
        registry.promote(challenger, "dev", rule=RULE)


def test_unreadable_records_are_refused(registry):
    store = registry.store
    registry.promote(make_version(store, "aaaaaa01", 0.60), "prod", rule=RULE)
    store.write_text_atomic(store.join(registry.folder("rtdetr", "prod"), "events", "00000002.json"), "{\"seq\":")
    with pytest.raises(RegistryFormatError, match=r"00000002\.json is not valid JSON"):
        registry.champion("rtdetr", "prod")
    store.write_json_atomic(store.join(registry.folder("rtdetr", "prod"), "events", "00000002.json"), {"a": 1})
    with pytest.raises(RegistryFormatError, match="is not a model registry record"):
        registry.champion("rtdetr", "prod")


def test_names_must_be_single_safe_path_components(tmp_path):
    registry = ModelRegistry(tmp_path)
    for bad in ("../prod", "a/b", "", ".hidden", "x" * 64):
        with pytest.raises(UserError, match="name"):
            registry.folder("rtdetr", bad)
    assert registry.folder("rtdetr", "prod-2026.11_a").endswith("models/rtdetr/prod-2026.11_a")


def test_own_event_is_recognised_when_a_retried_put_finds_it(tmp_path):
    """A PUT that landed but whose answer was lost is retried by the client and answered 412: the registry
    must see that the event at that number is its own (same id), not another writer's."""
    registry = ModelRegistry(tmp_path)
    outcome = registry.promote(make_version(registry.store, "aaaaaa01", 0.60), "prod", rule=RULE)
    assert registry._append(outcome.event) is True
    other = outcome.event.__class__(**{**outcome.event.__dict__, "id": "someone-else"})
    assert registry._append(other) is False


def test_warm_start_gives_the_champions_checkpoint(registry):
    assert registry.warm_start_checkpoint("rtdetr", "prod") is None
    v1 = make_version(registry.store, "aaaaaa01", 0.60)
    registry.promote(v1, "prod", rule=RULE)
    assert registry.warm_start_checkpoint("rtdetr", "prod") == v1.checkpoint
    store = registry.store
    store.fs.rm_file(v1.checkpoint if not store.is_local else store.local_path(v1.checkpoint))
    with pytest.raises(ChampionFilesMissing, match="checkpoint"):
        registry.warm_start_checkpoint("rtdetr", "prod")


def test_event_files_are_plain_json_with_a_format(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.promote(make_version(registry.store, "aaaaaa01", 0.60), "prod", rule=RULE)
    folder = Path(registry.folder("rtdetr", "prod"))
    assert json.loads((folder / "registry.json").read_text())["format"] == 1
    data = json.loads((folder / "events" / "00000001.json").read_text())
    assert data["format"] == 1 and data["champion"]["format"] == 1 and data["kind"] == "promoted"


def test_the_registry_is_engine_code_without_prefect():
    code = ("import sys, taoflow.registry, taoflow.promotion, taoflow.commands.models; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
