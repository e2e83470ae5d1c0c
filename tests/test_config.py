"""params.yaml validation, the paper overlay, and the one-line errors for bad settings and missing paths."""

import pytest
import yaml

from refine_iqa.config import ConfigError, check_paths, load_params, required_paths


def write(tmp_path, text, name="params.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_params_validate_and_fill_defaults():
    p = load_params("params.yaml")
    assert p["model"]["source"] == "embedded"
    assert p["stage2"]["pm"] == {"enabled": True, "delta": 0.02, "sigma_min": 0.1, "eps": 0.0001}
    assert p["stage2"]["pd"]["weights"] == [1.0, 0.1]
    check_paths(p)  # the embedded configuration reads nothing from outside the repository


def test_empty_file_gets_every_default(tmp_path):
    p = load_params(write(tmp_path, ""))
    assert p["stage1"]["grpo"]["num_generations"] == 8
    assert p["tracking"]["tracking_uri"] == "sqlite:///mlflow.db"


def test_paper_overlay_is_one_switch():
    p = load_params("params.yaml", {"overlay": "configs/paper.yaml"})
    assert p["model"]["source"] == "local" and p["model"]["dtype"] == "bfloat16"
    assert p["stage1"]["grpo"]["learning_rate"] == 1e-5 and p["stage2"]["grpo"]["learning_rate"] == 1e-6
    assert p["stage2"]["grpo"]["gradient_accumulation_steps"] == 2 and p["stage2"]["grpo"]["num_train_epochs"] == 3
    assert p["warmstart"]["enabled"] is False
    assert p["compute"]["accelerate_config"].endswith("zero3_offload.yaml")
    # the embedded levers (docs/DECISIONS.md) are all back at the paper's values
    syn = p["data"]["perception"]["synthesize"]
    assert syn["families"] is None and syn["level_weights"] is None
    for stage in ("stage1", "stage2"):
        assert p[stage]["grpo"]["answer_kl_coef"] == 0.0 and p[stage]["grpo"]["balanced_batches"] is False


def test_paper_config_without_model_names_path_and_setting(tmp_path):
    p = load_params("params.yaml", {"overlay": "configs/paper.yaml"})
    with pytest.raises(ConfigError, match=r"^params.yaml: model.path is not set; set it"):
        check_paths(p)
    missing = tmp_path / "Qwen2.5-VL-7B-Instruct"
    p = load_params("params.yaml", {"overlay": "configs/paper.yaml", "model": {"path": str(missing)}})
    with pytest.raises(ConfigError) as e:
        check_paths(p)
    msg = str(e.value)
    assert "model.path" in msg and str(missing) in msg and "not found" in msg and "\n" not in msg


def test_overrides_beat_the_overlay_which_beats_params_yaml():
    p = load_params("params.yaml", {"overlay": "configs/paper.yaml", "compute": {"device": "cpu"},
                                    "data": {"scoring": {"roots": {"koniq10k": "/data/koniq"}}}})
    assert p["compute"]["device"] == "cpu"  # override over the overlay's cuda
    assert p["compute"]["num_processes"] == 8  # overlay over params.yaml
    assert p["data"]["scoring"]["roots"]["koniq10k"] == "/data/koniq"
    assert p["seed"] == 0  # params.yaml value the overlay does not set


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "seed: 0\nmodel:\n  dtype: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert str(path) in str(e.value) and "line" in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_is_a_typo_error(tmp_path):
    with pytest.raises(ConfigError, match=r"stage2\.pm: Additional properties.*'delat'"):
        load_params(write(tmp_path, "stage2:\n  pm:\n    delat: 0.1\n"))


def test_wrong_type_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"stage1\.grpo\.num_generations"):
        load_params(write(tmp_path, "stage1:\n  grpo:\n    num_generations: eight\n"))


def test_batch_must_be_a_multiple_of_g(tmp_path):
    with pytest.raises(ConfigError, match="multiple of stage2.grpo.num_generations"):
        load_params(write(tmp_path, "stage2:\n  grpo:\n    per_device_train_batch_size: 12\n    num_generations: 8\n"))


def test_missing_overlay_file(tmp_path):
    with pytest.raises(ConfigError, match="overlay: file 'nope.yaml' not found"):
        load_params(write(tmp_path, "overlay: nope.yaml\n"))


def test_required_paths_follow_the_configured_sources(tmp_path):
    p = load_params(write(tmp_path, yaml.safe_dump({
        "data": {"scoring": {"source": "datasets", "train_datasets": ["koniq10k"], "eval_datasets": ["csiq"],
                             "roots": {"koniq10k": str(tmp_path)}}}})))
    settings = [s for s, _, _ in required_paths(p)]
    assert settings == ["data.scoring.roots.csiq", "data.scoring.roots.koniq10k"]
    with pytest.raises(ConfigError, match="data.scoring.roots.csiq is not set"):
        check_paths(p)


def test_model_folder_without_config_json(tmp_path):
    (tmp_path / "m").mkdir()
    p = load_params(write(tmp_path, f"model:\n  source: local\n  path: {tmp_path / 'm'}\n"))
    with pytest.raises(ConfigError, match="has no config.json"):
        check_paths(p)


def test_any_grpo_config_field_passes_through_by_name(tmp_path):
    from refine_iqa.rl.grpo import grpo_config

    p = load_params(write(tmp_path, "stage2:\n  grpo:\n    top_p: 0.9\n    loss_type: grpo\n    mask_truncated_completions: true\n"))
    g = p["stage2"]["grpo"]
    assert g["top_p"] == 0.9 and g["learning_rate"] == 1.0e-5  # schema keys still filled
    cfg = grpo_config(g, out_dir=tmp_path / "o", seed=0)
    assert cfg.top_p == 0.9 and cfg.loss_type == "grpo" and cfg.mask_truncated_completions is True
    assert grpo_config(load_params("params.yaml")["stage2"]["grpo"], out_dir=tmp_path / "o", seed=0).loss_type == "dapo"


@pytest.mark.parametrize("text, message", [
    ("use_vlm: true", r"stage1\.grpo\.use_vlm: not a setting .*did you mean 'use_vllm'"),
    ("num_generation: 8", r"stage1\.grpo\.num_generation: .*did you mean 'num_generations'"),
    ("seed: 3", r"stage1\.grpo\.seed: set by the project.*top-level seed"),
    ("warmup_ratio: 0.03", r"stage1\.grpo\.warmup_ratio: set by the project.*warmup_epochs"),
])
def test_unknown_grpo_field_names_the_closest_match(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_params(write(tmp_path, f"stage1:\n  grpo:\n    {text}\n"))


def test_digits_must_be_single_tokens(tmp_path):
    from refine_iqa.model.loading import ModelFolderError, check_digit_tokens

    class Tok:  # a tokenizer that merges nothing but splits "7" into two pieces
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text] + ([0] if text == "7" else [])}

        def decode(self, ids):
            return "".join(chr(i) for i in ids if i)

    with pytest.raises(ModelFolderError, match=r"models/x: the tokenizer encodes the digit '7' as \[55, 0\]"):
        check_digit_tokens(Tok(), "models/x")
