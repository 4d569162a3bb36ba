"""`tao-release`: an example deployment pipeline that a promotion starts.

prefect.yaml's `tao-release` deployment carries an automation trigger: a `tao.model.promoted` event of a
`prod` registry name (emitted by a pipeline's promotion step, tasks/events.py) runs this flow with the
event's model, name, engine and registry event number. It releases the registry's current champion
(taoflow/registry/release.py writes `<store>/releases/<model>/<name>/release.json`), which is the event's
engine unless a later promotion or a rollback landed since. Put your own rollout after it (a Triton model
repository, a DeepStream config, a fleet update).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact

from taoflow.registry import ModelRegistry
from taoflow.registry.release import release_champion


@flow(name="tao-release")
def tao_release(model: str, name: str, engine: str | None = None, seq: int | None = None,
                store: str | None = None) -> dict[str, Any]:
    """Release the champion of a registry name.

    Args:
        model: The model (skill) name, e.g. rtdetr.
        name: The registry name, e.g. prod.
        engine: The engine the triggering event promoted (for the log: the release is of the current champion).
        seq: The registry event that triggered the release.
        store: Artifact store root (default: $TAOFLOW_STORE, else ./.taoflow).
    """
    logger = get_run_logger()
    release = release_champion(ModelRegistry(store), model, name)
    if engine and engine != release["deployable"]:
        logger.warning("%s/%s: event #%s promoted %s, but the champion is now %s (event #%s): releasing that",
                       model, name, seq, engine, release["version"], release["seq"])
    logger.info("%s/%s: %s %s (event #%s)", model, name, "released" if release["changed"] else "already released",
                release["deployable"], release["seq"])
    create_link_artifact(link=release["deployable"], link_text=f"{model}/{name} release: {release['version']}",
                         key=f"{model}-{name}-release".replace("_", "-").replace(".", "-").lower(),
                         description=f"{model}/{name}: the released champion (registry event #{release['seq']})")
    return release
