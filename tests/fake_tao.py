"""A stand-in for TAO's `rtdetr` console script (TAO cannot be installed here): it writes the train results
folder real TAO 6.x writes (tests/tao_layouts.py, built from NVIDIA's source), where TAO writes it:
`<results_dir>/<action>/`, and resolves the spec's `${oc.env:VAR}` key as OmegaConf would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAKE_TAO = '''#!{python}
"""Stands in for TAO's `rtdetr` console script (TAO cannot be installed here): writes what TAO 6.x writes,
from tests/tao_layouts.py (built from NVIDIA's source), where TAO writes it: `<results_dir>/<action>/`."""
import os, re, sys
sys.path.insert(0, {repo!r})
import yaml
from pathlib import Path
from tests.tao_layouts import write_train
action, spec_path, overrides = sys.argv[1], sys.argv[3], sys.argv[4:]
spec = yaml.safe_load(open(spec_path))
out = Path((spec.get(action) or {{}}).get("results_dir") or Path(spec["results_dir"]) / action)
out.mkdir(parents=True, exist_ok=True)
env_ref = re.fullmatch(r"\\$\\{{oc\\.env:(\\w+)\\}}", spec.get("encryption_key") or "")  # OmegaConf's oc.env
key = os.environ[env_ref.group(1)] if env_ref else spec.get("encryption_key")
print("real TAO", action, "overrides:", " ".join(overrides), "encryption_key:", key, flush=True)
write_train(out, "rtdetr", [0.3, 0.6, 0.5], steps=2)
'''


def put_fake_tao_on_path(tmp_path: Path, monkeypatch) -> Path:
    """Writes `<tmp_path>/bin/rtdetr` and puts it first on PATH; returns the script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "rtdetr"
    script.write_text(FAKE_TAO.format(python=sys.executable, repo=str(REPO)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script
