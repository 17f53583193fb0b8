import pytest

from sweep.config import comparable_part, load_config
from sweep.core.errors import UserError


def test_default_config_composes_and_validates():
    cfg = load_config([])
    assert cfg.task.name == "digits" and cfg.model.name == "lstm" and cfg.optimizer.name == "sgd"
    assert cfg.seeds >= 1 and cfg.epochs >= 1
    assert len(cfg.grid.settings()) == len(cfg.grid.lr) * len(cfg.grid.clip) * len(
        cfg.grid.batch_size
    )
    assert cfg.storage_url().startswith("sqlite:///") and cfg.storage_url().endswith("lrsweep.db")


def test_overrides_reach_typed_config():
    cfg = load_config(
        [
            "task=temporal_order",
            "model=gru",
            "optimizer=adam",
            "grid.lr=[0.001,0.01]",
            "grid.clip=[null,0.5]",
            "grid.batch_size=[32,128]",
            "seeds=5",
            "epochs=20",
            "study.name=mine",
        ]
    )
    assert (
        cfg.task.name == "temporal_order"
        and cfg.model.name == "gru"
        and cfg.optimizer.name == "adam"
    )
    assert (
        cfg.grid.lr == (0.001, 0.01)
        and cfg.grid.clip == (None, 0.5)
        and cfg.grid.batch_size == (32, 128)
    )
    assert len(cfg.grid.settings()) == 8
    assert {"lr": 0.001, "clip": None, "batch_size": 32} in cfg.grid.settings()
    assert cfg.study.name == "mine" and cfg.seeds == 5 and cfg.epochs == 20


def test_single_value_grid_axis_is_accepted():
    assert load_config(["grid.lr=0.1"]).grid.lr == (0.1,)


def test_study_name_defaults_to_task_model_optimizer():
    assert load_config(["task=adding", "model=gru"]).study.name == "adding-gru-sgd"


@pytest.mark.parametrize(
    "override,needle",
    [
        ("grid.lr=[-0.1]", "grid.lr: every learning rate must be > 0, got -0.1"),
        ("grid.lr=[0]", "grid.lr: every learning rate must be > 0"),
        ("grid.lr=[abc]", "grid.lr: must be a number, got 'abc'"),
        ("grid.lr=[]", "grid.lr: must list at least one value"),
        ("grid.clip=[0]", "grid.clip: every clip norm must be > 0 or null"),
        ("grid.batch_size=[0]", "grid.batch_size: every batch size must be >= 1"),
        ("grid.batch_size=[1.5]", "grid.batch_size: must be an integer"),
        ("seeds=0", "seeds: must be >= 1"),
        ("epochs=0", "epochs: must be >= 1"),
        ("workers=0", "workers: must be >= 1 or auto"),
        ("detect.drop=1.5", "detect.drop: must be in (0, 1)"),
        ("detect.min_gain=0", "detect.min_gain: must be in (0, 1)"),
        ("task=nope", "task=nope: unknown task; valid tasks: adding, digits"),
        ("model=transformer", "unknown model; valid models: gru, lstm"),
        ("optimizer=lbfgs", "unknown optimizer; valid optimizers: adam, adamw, rmsprop, sgd"),
        ("epoch=3", "epoch: unknown config key"),
        ("model.hiden_size=3", "model.hiden_size: unknown config key"),
        ("optimizer.nesterov=true", "optimizer.nesterov: needs optimizer.momentum > 0"),
        ("model.dropout=1", "model.dropout: must be in [0, 1)"),
        ("grid.lr=[0.1,0.1]", "grid.lr: values must not repeat"),
    ],
)
def test_bad_values_raise_one_line_user_errors(override, needle):
    extra = ["optimizer.momentum=0"] if override.startswith("optimizer.nesterov") else []
    with pytest.raises(UserError) as info:
        load_config([override, *extra])
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_extra_grid_axis_must_name_an_existing_key():
    cfg = load_config(["+grid.model.hidden_size=[16,32]"])
    assert dict(cfg.grid.extra) == {"model.hidden_size": (16, 32)}
    assert len(cfg.grid.settings()) == 2 * len(cfg.grid.lr) * len(cfg.grid.clip)
    with pytest.raises(UserError, match="grid.model.size: not a config key"):
        load_config(["+grid.model.size=[16,32]"])
    with pytest.raises(UserError, match="model.hidden_size: must be >= 1"):
        load_config(["+grid.model.hidden_size=[0,32]"])


def test_comparable_part_excludes_grid_seeds_and_execution_keys():
    a = comparable_part(load_config(["seeds=3", "grid.lr=[0.1]", "workers=2"]))
    b = comparable_part(
        load_config(["seeds=9", "grid.lr=[0.5,1.0]", "workers=1", "detect.drop=0.3"])
    )
    assert a == b
    c = comparable_part(load_config(["model.hidden_size=128"]))
    assert c != a and c["model.hidden_size"] == 128
