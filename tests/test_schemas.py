"""The generated JSON Schemas and templates (scripts/generate_schemas.py) are reproducible, standard
Draft 2020-12, accept their own templates and TAO's defaults, and reject what TAO would reject."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import shutil
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parent.parent
SKILLS = REPO / "skills"
SCRIPT = REPO / "scripts" / "generate_schemas.py"
MODELS = ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d")


def _generator():
    spec = importlib.util.spec_from_file_location("generate_schemas", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _tao_available() -> bool:
    return importlib.util.find_spec("nvidia_tao_core") is not None


needs_tao = pytest.mark.skipif(not _tao_available(), reason="nvidia_tao_core is not installed: cannot regenerate")


@cache
def manifest(model: str) -> dict:
    return json.loads((SKILLS / model / "schemas" / "manifest.json").read_text())


@cache
def schema(model: str, tao_action: str) -> dict:
    return json.loads((SKILLS / model / "schemas" / f"{tao_action}.schema.json").read_text())


@cache
def validator(model: str, tao_action: str) -> Draft202012Validator:
    return Draft202012Validator(schema(model, tao_action))


def template(model: str, step: str) -> dict:
    return yaml.safe_load((SKILLS / model / "templates" / f"{step}.yaml").read_text())


def steps() -> list[tuple[str, str, str]]:
    return [(m, step, a["tao_action"]) for m in MODELS for step, a in manifest(m)["actions"].items()]


def error_paths(model: str, tao_action: str, spec: dict) -> list[str]:
    return sorted(".".join(map(str, e.absolute_path)) for e in validator(model, tao_action).iter_errors(spec))


def prop(model: str, tao_action: str, dotted: str) -> dict:
    node = schema(model, tao_action)
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


# ------------------------------------------------------------------------------------ reproducibility


@needs_tao
def test_committed_files_are_reproduced_byte_for_byte(capsys):
    assert _generator().main(["--check"]) == 0, capsys.readouterr().err


@needs_tao
def test_check_lists_changed_and_stale_files(tmp_path, capsys):
    gen = _generator()
    copy_root = tmp_path / "repo"
    shutil.copytree(SKILLS, copy_root / "skills")
    gen.REPO, gen.SKILLS_DIR = copy_root, copy_root / "skills"
    changed = copy_root / "skills" / "rtdetr" / "schemas" / "train.schema.json"
    changed.write_text(changed.read_text().replace('"exclusiveMinimum"', '"minimum"', 1))
    stale = copy_root / "skills" / "centerpose" / "templates" / "old_step.yaml"
    stale.write_text("model: {}\n")
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "skills/rtdetr/schemas/train.schema.json" in err
    assert "skills/centerpose/templates/old_step.yaml (stale)" in err
    # Writing repairs both, and a second run is a no-op that --check accepts.
    assert gen.main([]) == 0
    assert not stale.exists()
    assert changed.read_bytes() == (SKILLS / "rtdetr" / "schemas" / "train.schema.json").read_bytes()
    assert gen.main(["--check"]) == 0


@pytest.mark.parametrize("model", MODELS)
def test_manifest_hashes_and_actions_match_the_skill(model):
    man = manifest(model)
    assert man["generator"] == "scripts/generate_schemas.py"
    assert man["nvidia_tao_core_version"]
    for rel, digest in man["files"].items():
        assert hashlib.sha256((SKILLS / model / rel).read_bytes()).hexdigest() == digest, rel
    skill = yaml.safe_load((SKILLS / model / "skill.yaml").read_text())
    assert set(man["actions"]) == set(skill["actions"])
    for step, action in skill["actions"].items():
        assert man["actions"][step]["tao_action"] == action["tao_action"]
        assert man["actions"][step]["sections"] == action["sections"]
        assert (SKILLS / model / man["actions"][step]["schema"]).is_file()
        assert (SKILLS / model / man["actions"][step]["template"]).is_file()


def test_files_are_canonical_json_with_trailing_newline():
    for path in sorted(SKILLS.glob("*/schemas/*.json")):
        text = path.read_text()
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n", path


# ----------------------------------------------------------------------------------- schema validity


@pytest.mark.parametrize("model", MODELS)
def test_every_schema_is_valid_draft_2020_12(model):
    for path in sorted((SKILLS / model / "schemas").glob("*.schema.json")):
        doc = json.loads(path.read_text())
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(doc)
        assert doc["additionalProperties"] is False
        assert doc["x-tao-action"] == path.name.removesuffix(".schema.json")


@pytest.mark.parametrize(("model", "step", "tao_action"), steps())
def test_template_validates_against_its_schema(model, step, tao_action):
    tmpl = template(model, step)
    assert error_paths(model, tao_action, tmpl) == []
    sections = manifest(model)["actions"][step]["sections"]
    props = schema(model, tao_action)["properties"]
    for key in tmpl:
        assert key in sections or "properties" not in props[key], f"{key} is a section the step does not read"
    for section in sections:
        assert section in tmpl
    for secret_or_handoff in ("results_dir", "model_name", "encryption_key"):
        assert tmpl.get(secret_or_handoff) is None
    assert (SKILLS / model / "templates" / f"{step}.yaml").read_text().startswith("# Generated by")


@pytest.mark.parametrize("model", MODELS)
def test_every_default_fits_its_own_property(model):
    """TAO's defaults are valid values (TAO loads them), so bounds derived from its metadata admit them."""
    for path in sorted((SKILLS / model / "schemas").glob("*.schema.json")):
        def walk(node: dict, dotted: str, path: Path = path) -> None:
            for key, sub in node.get("properties", {}).items():
                if "default" in sub:
                    check = {k: v for k, v in sub.items() if k != "default"}
                    errors = list(Draft202012Validator(check).iter_errors(sub["default"]))
                    assert not errors, f"{path.name} {dotted}{key}: {errors[0].message}"
                walk(sub, f"{dotted}{key}.")

        walk(json.loads(path.read_text()), "")


# ------------------------------------------------------------------------------------ rejections


def test_unknown_keys_are_rejected_at_every_level():
    spec = template("rtdetr", "train")
    spec["not_a_section"] = 1
    spec["train"]["optim"]["not_an_option"] = 1
    spec["dataset"]["augmentation"]["typo_prob"] = 0.5
    spec["model"]["frozen_fm"]["extra"] = True
    assert error_paths("rtdetr", "train", spec) == [
        "", "dataset.augmentation", "model.frozen_fm", "train.optim"
    ]
    quant = template("rtdetr", "quantize")
    quant["quantize"]["layers"] = [{"module_name": "backbone", "not_a_layer_key": 1}]
    assert error_paths("rtdetr", "quantize", quant) == ["quantize.layers.0"]


def test_free_form_dicts_stay_open_but_typed():
    spec = template("action_recognition", "train")
    spec["dataset"]["label_map"] = {"walk": 0, "run": 1}
    assert error_paths("action_recognition", "train", spec) == []
    spec["dataset"]["label_map"] = {"walk": "zero"}
    assert error_paths("action_recognition", "train", spec) == ["dataset.label_map.walk"]


def test_bounds_enums_and_types_are_enforced():
    assert prop("rtdetr", "train", "train.optim.lr")["exclusiveMinimum"] == 0.0
    assert prop("rtdetr", "train", "train.optim.lr")["maximum"] == 1.0
    assert prop("rtdetr", "train", "dataset.num_classes")["minimum"] == 1
    assert "Infinity" not in (SKILLS / "rtdetr" / "schemas" / "train.schema.json").read_text()
    cases = [
        ("train.optim.lr", 0.0, True), ("train.optim.lr", 2.0, True), ("train.optim.lr", 1e-4, False),
        ("train.optim.lr", 1, False),  # integers are numbers, as OmegaConf accepts them for floats
        ("dataset.num_classes", 0, True), ("dataset.num_classes", "five", True),
        ("dataset.num_classes", 1.5, True), ("model.backbone", "resnet_9000", True),
        ("model.backbone", "resnet_18", False), ("train.num_epochs", True, True),
        ("dataset.train_data_sources", None, False),  # Optional
        ("dataset.train_data_sources", [{"image_dir": "/d/images", "json_file": "/d/a.json"}], False),
        ("dataset.train_data_sources", [{"image_dir": 3}], True),
    ]
    for dotted, value, rejected in cases:
        spec = template("rtdetr", "train")
        node = spec
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
        assert bool(error_paths("rtdetr", "train", spec)) is rejected, (dotted, value)


def test_math_cond_and_valid_bounds_metadata_kept():
    lr = prop("nvpanoptix3d", "train", "train.optim.lr")
    assert lr["x-tao-math-cond"] == "> 0.0" and lr["exclusiveMinimum"] == 0.0
    assert (lr["x-tao-valid-min"], lr["x-tao-valid-max"]) == (1e-06, 0.01)
    assert prop("rtdetr", "train", "dataset.num_classes")["x-tao-valid-max"] == "inf"
    num_select = prop("rtdetr", "train", "model.num_select")
    assert num_select["x-tao-depends-on"] == "model.num_queries"
    # TAO's default breaks its own bound here; the schema admits the default and says so.
    symmetry = prop("centerpose", "evaluate", "evaluate.eval_num_symmetry")
    assert symmetry["x-tao-default-outside-bounds"] is True and symmetry["minimum"] == 1


def test_missing_values_are_marked_and_accepted_as_placeholders():
    ev = schema("rtdetr", "evaluate")
    assert "evaluate.checkpoint" in ev["x-tao-missing-parameters"]
    assert prop("rtdetr", "evaluate", "evaluate.checkpoint")["x-tao-missing"] is True
    assert "default" not in prop("rtdetr", "evaluate", "evaluate.checkpoint")
    conv = template("sparse4d", "dataset_convert")
    assert conv["aicity"]["recentering"] == "???"
    assert error_paths("sparse4d", "convert", conv) == []
    conv["aicity"]["recentering"] = True
    assert error_paths("sparse4d", "convert", conv) == []
    conv["aicity"]["recentering"] = "yes"
    assert error_paths("sparse4d", "convert", conv) == ["aicity.recentering"]
    assert schema("sparse4d", "convert")["x-tao-missing-parameters"] == [
        "aicity.camera_grouping_mode", "aicity.depth_format", "aicity.recentering", "aicity.rgb_format",
        "aicity.root", "aicity.split", "aicity.version",
    ]


def test_required_sections_follow_the_skill():
    assert schema("rtdetr", "train")["required"] == ["dataset", "model", "train"]
    # evaluate and trt_evaluate share TAO's evaluate: only the sections both read are required.
    assert schema("rtdetr", "evaluate")["required"] == ["dataset", "evaluate"]
    spec = template("rtdetr", "train")
    del spec["train"]
    assert error_paths("rtdetr", "train", spec) == [""]


@pytest.mark.parametrize("model", MODELS)
def test_automl_metadata_points_at_real_properties(model):
    train = schema(model, "train")
    params = train["x-tao-automl-default-parameters"]
    assert params, "TAO declares default AutoML parameters for every model"
    assert params == sorted(params)
    for dotted in params:
        node = prop(model, "train", dotted)
        assert node["x-tao-automl-enabled"] is True
        assert {"integer", "number", "boolean", "string"} & set(
            node["type"] if isinstance(node["type"], list) else [node["type"]]
        )
    for key in ("x-tao-automl-disabled-parameters", "x-tao-popular", "x-tao-required"):
        assert train[key] == sorted(train[key])


def test_schema_copy_is_not_shared_between_actions():
    """Each action file is a full document (validators and AutoML read one file, no $ref across files)."""
    a, b = copy.deepcopy(schema("rtdetr", "train")), copy.deepcopy(schema("rtdetr", "export"))
    assert a["properties"] == b["properties"]
    assert a["required"] != b["required"]


def test_reading_rules_are_written_into_the_schemas():
    """CASE_INSENSITIVE_OPTIONS, EXTRA_OPTIONS, UNREAD_OPTIONS, EXTRA_SHAPES and ADVISORY_KEYWORDS of the
    generator land in the schemas, each with the NVIDIA source that justifies it."""
    gen = _generator()
    for network, rules in gen.CASE_INSENSITIVE_OPTIONS.items():
        for dotted, source in rules.items():
            node = prop(network, "train" if dotted.split(".")[0] in ("train", "model", "dataset") else
                        {"gen_trt_engine": "gen_trt_engine", "quantize": "quantize"}[dotted.split(".")[0]], dotted)
            holder = node if "enum" in node else next(b for b in node.get("anyOf", []) if "enum" in b)
            assert holder["x-tao-ignore-case"] == source and ":" in source
    assert "SGD" in prop("nvpanoptix3d", "train", "train.optim.type")["enum"]
    assert prop("nvpanoptix3d", "inference", "inference.mode")["x-tao-unread"]
    image_dir = prop("rtdetr", "inference", "dataset.infer_data_sources")["properties"]["image_dir"]
    assert {"type": "array", "items": {"type": "string"}} in image_dir["anyOf"] and image_dir["x-tao-shapes"]
    scales = prop("rtdetr", "train", "dataset.augmentation.multi_scales")["items"]
    assert len(scales["anyOf"]) == 2 and scales["x-tao-shapes"]
    for model in MODELS:
        assert schema(model, "train")["x-tao-advisory-keywords"] == gen.ADVISORY_KEYWORDS
    assert prop("rtdetr", "train", "train.optim.lr")["x-tao-type"] == "float"
    assert prop("rtdetr", "train", "dataset.train_data_sources")["x-tao-type"] == "Optional[List[Dict[str, str]]]"
