"""Config loading: presets, overrides with type coercion, and one-line errors naming the key."""

from __future__ import annotations

import pytest
import torch

from mlfo.cli import main
from mlfo.config import Config, config_from_dict, load_config, preset_names, save_config, to_dict
from mlfo.errors import MLFOError
from mlfo.train.engine import check_runtime
from mlfo.train.pretrain import trainer_config

from train_helpers import REPO


def test_presets_load_by_name_and_path_and_match_the_method():
    assert {"demo_cpu", "ucf101_r3d18", "kinetics400_r3d18"} <= set(preset_names())
    k400 = load_config(REPO / "mlfo" / "configs" / "kinetics400_r3d18.yaml")
    ucf = load_config("ucf101_r3d18")
    for cfg in (k400, ucf):
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 1e-3, 1e-5)
        assert (cfg.optim.schedule, cfg.optim.lr_decay_factor) == ("step", 0.1)
        assert (cfg.data.clip_len, cfg.data.crop_size, cfg.data.batch_size) == (16, 112, 64)
        assert cfg.backbone.name == "r3d_18" and cfg.objective.queue_start == 10
    assert (k400.train.epochs, k400.optim.lr_decay_epochs, k400.model.num_prototypes, k400.objective.graph_start) == (100, [70], 1000, 20)
    assert (ucf.train.epochs, ucf.optim.lr_decay_epochs, ucf.model.num_prototypes, ucf.objective.graph_start) == (300, [200], 200, 50)
    demo = load_config("demo_cpu")
    assert demo.backbone.name == "r3d_small" and demo.train.device == "cpu" and demo.train.amp == "off"
    assert demo.objective.graph_start < demo.train.epochs and demo.objective.queue_start < demo.train.epochs


def test_presets_exist_once_as_package_data():
    assert not (REPO / "configs").exists()  # one copy: mlfo/configs, shipped in the wheel
    assert sorted(p.stem for p in (REPO / "mlfo" / "configs").glob("*.yaml")) == preset_names()


def test_overrides_are_coerced_to_the_field_types():
    cfg = load_config("demo_cpu", [
        "optim.lr=1e-4",  # YAML reads this as a string
        "data.batch_size=8",
        "train.compile=yes",
        "data.crop_scale=[0.3, 0.9]",
        "backbone.widths=[8,16,16,32]",
        "optim.lr_decay_epochs=3",
        "model.fine_steps={low: 4}",
        "data.split_dir=none",
    ])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 8 and cfg.train.compile is True
    assert cfg.data.crop_scale == (0.3, 0.9)
    assert cfg.backbone.widths == [8, 16, 16, 32]
    assert cfg.optim.lr_decay_epochs == [3]
    assert cfg.model.fine_steps == {"low": 4, "mid": 4, "high": 2}
    assert cfg.data.split_dir is None


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.learning_rate=0.1", "optim.learning_rate"),  # unknown key
        ("nosection.x=1", "nosection"),  # unknown section
        ("objective.taux=0.1", "objective.taux"),  # unknown key in a foreign dataclass
        ("data.batch_size=many", "data.batch_size"),  # bad type
        ("data.batch_size=2.5", "data.batch_size"),
        ("train.compile=perhaps", "train.compile"),
        ("train.amp=fp8", "train.amp"),  # bad choice
        ("data.crop_scale=[0.5]", "data.crop_scale"),  # wrong length
        ("data.batch_size=0", "data.batch_size"),  # bad value
        ("optim.lr=-1", "optim.lr"),
        ("objective.tau=0", "objective.tau"),  # refused by the objective's own check
        ("data.color_p_gray=1.5", "data.color_p_gray"),  # a probability
        ("data.color_strength=-0.1", "data.color_strength"),
        ("optim=3", "optim"),  # a value where a section belongs
        ("justtext", "justtext"),  # not key=value
    ],
)
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(MLFOError) as err:
        load_config("demo_cpu", [override])
    message = str(err.value)
    assert key in message and "\n" not in message


def test_errors_in_a_file_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\n  nesterov: true\n")
    with pytest.raises(MLFOError, match=r"bad\.yaml: optim\.nesterov: unknown key"):
        load_config(path)
    path.write_text("optim: [1, 2\n")
    with pytest.raises(MLFOError, match=r"bad\.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(MLFOError, match="no such config file or preset"):
        load_config(tmp_path / "missing.yaml")


def _runtime(overrides, device="cpu"):
    check_runtime(trainer_config(load_config("demo_cpu", overrides)), torch.device(device))


def test_cpu_refuses_bf16_and_sync_bn():
    with pytest.raises(MLFOError, match=r"train\.amp: bf16 autocast is GPU-only"):
        _runtime(["train.amp=bf16"])
    with pytest.raises(MLFOError, match=r"train\.sync_bn"):
        _runtime(["train.sync_bn=true"])
    _runtime([])  # fp32 is fine


@pytest.mark.parametrize("device", ["cpu", "cuda"])  # a device name: no GPU is touched
def test_sync_bn_with_compile_is_refused_in_one_line_on_any_device(device):
    with pytest.raises(MLFOError) as err:
        _runtime(["train.sync_bn=true", "train.compile=true"], device)
    assert str(err.value).startswith("train.compile with train.sync_bn: ") and "\n" not in str(err.value)
    _runtime(["train.compile=true"], device)  # compile alone is fine
    preset = load_config("kinetics400_r3d18").train  # keeps SyncBatchNorm, without compile
    assert preset.sync_bn and not preset.compile


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("ucf101_r3d18", ["optim.lr=0.002", "model.fine_steps={low: 4}"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert config_from_dict(to_dict(cfg)) == cfg
    assert isinstance(Config(), Config)


def test_cli_reports_bad_config_as_one_line(capsys):
    assert main(["pretrain", "demo_cpu", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfo: error:") and "optim.lrr: unknown key" in err and "\n" not in err
    assert main(["pretrain", "demo_cpu", "train.amp=bf16", "--out", "/nonexistent/never"]) == 2
    assert "train.amp" in capsys.readouterr().err


def test_colour_strength_keys_reach_the_augmentation(tmp_path):
    """The colour keys are not just parsed: the trainer builds its ColorAugment from them."""
    from mlfo.method import build_color_augment

    cfg = load_config("ucf101_r3d18", ["data.color_p_gray=0.2", "data.color_strength=0.3", "data.color_hue=0.1"])
    color = build_color_augment(cfg.data)
    assert (color.p_gray, *color.strengths) == (0.2, 0.3, 0.3, 0.3, 0.1)
    assert color.per_frame_color is True  # the reference default of the preset
    assert build_color_augment(load_config("demo_cpu").data) is None  # the demo switches colour off


def test_color_ramp_scales_every_strength_linearly():
    from mlfo.method import build_color_augment

    ramped = load_config("ucf101_r3d18", ["data.color_ramp_steps=100"]).data
    full = build_color_augment(ramped)  # no step: full strength
    assert (full.p_gray, *full.strengths) == (0.5, 0.5, 0.5, 0.5, 0.25)
    assert build_color_augment(ramped, step=-1).strengths == (0.0, 0.0, 0.0, 0.0)
    half = build_color_augment(ramped, step=49)
    assert half.p_gray == pytest.approx(0.25) and half.strengths == pytest.approx((0.25, 0.25, 0.25, 0.125))
    assert build_color_augment(ramped, step=500).strengths == full.strengths
    reference = load_config("ucf101_r3d18").data  # default 0: no ramp
    assert build_color_augment(reference, step=0).strengths == full.strengths
    with pytest.raises(MLFOError, match="data.color_ramp_steps"):
        load_config("ucf101_r3d18", ["data.color_ramp_steps=-1"])


def test_color_ramp_reaches_the_method_each_step():
    from mlfo.method import MLFOMethod

    method = MLFOMethod(load_config("demo_cpu", ["data.color_augment=true", "data.color_ramp_steps=10"]))
    method.before_forward(0, 4)
    assert method.color.strengths == pytest.approx((0.25, 0.25, 0.25, 0.125))
    method.before_forward(3, 50)
    assert method.color.strengths == pytest.approx((0.5, 0.5, 0.5, 0.25))
