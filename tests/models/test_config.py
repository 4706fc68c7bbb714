"""Training configurations: defaults, the shipped files, every refusal and its message, ``--set``
overrides, load_config's file handling and the to_toml round trip."""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from models.config import (DEFAULTS, Config, StageSpec, apply_overrides, load_config, parse_config, stage_specs,
                           to_toml)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STAGE = {"k": 8, "maps": 8, "pool": 3, "lcn": 3}


def raw(**tables) -> dict:
    """A minimal valid raw configuration (one stage) with ``tables`` merged over it."""
    out = {"model": {"stages": [dict(STAGE)]}}
    for table, values in tables.items():
        out.setdefault(table, {}).update(values)
    return out


def tables(config: dict) -> dict:
    """The effective configuration of ``config`` as TOML tables."""
    return parse_config(config).as_dict()


def refused(config: dict, *fragments: str) -> str:
    """parse_config refuses ``config`` with a message holding every fragment; returns it."""
    with pytest.raises(ValueError) as info:
        parse_config(config)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- defaults --------------------------------------------------------------------------------

def test_parse_config_fills_every_default():
    config = tables(raw())
    assert set(config) == {"model", "train", "data", "run"}
    for table in ("train", "run"):
        assert config[table] == DEFAULTS[table]
    assert config["data"] == {"source": "bundled"}
    full = {**STAGE, "stride": 1, "lambda": 0.1, "eps": 1e-4, "tied": False, "norm": "none"}  # defaults written out
    assert config["model"] == {**DEFAULTS["model"], "stages": [full]}


def test_parse_config_keeps_given_values_and_defaults_the_rest():
    config = tables(raw(train={"lr": 0.2, "steps": 7}, run={"backend": "cupy"}))
    assert config["train"]["lr"] == 0.2 and config["train"]["steps"] == 7
    assert config["train"]["batch"] == DEFAULTS["train"]["batch"]
    assert config["run"] == {**DEFAULTS["run"], "backend": "cupy"}


def test_parse_config_returns_a_new_dict_and_leaves_defaults_and_raw_alone():
    given = raw(run={"grid": [2, 1]}, data={"source": "folder", "path": "x", "tags": ["a"]})
    before, defaults = copy.deepcopy(given), copy.deepcopy(DEFAULTS)
    config = parse_config(given)
    out = config.as_dict()
    out["run"]["grid"][0] = 9
    out["model"]["stages"][0]["k"] = 99
    out["model"]["input"][0] = 1
    out["data"]["path"] = "y"
    out["data"]["tags"].append("b")
    assert given == before and DEFAULTS == defaults
    assert config == parse_config(before)  # as_dict() hands out copies


def test_the_configuration_is_typed_and_frozen():
    config = parse_config(raw(train={"lr": 0.2}, run={"grid": [2, 1]}, data={"face_share": 0.5}))
    assert isinstance(config, Config)
    assert config.train.lr == 0.2 and config.model.input == (32, 32, 3) and config.run.grid == (2, 1)
    assert config.model.stages == (StageSpec(**STAGE),) and config.data.options["face_share"] == 0.5
    assert parse_config(raw()).run.grid is None  # "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0
    with pytest.raises(TypeError):
        config.data.options["face_share"] = 1.0
    assert config.train.lr_schedule is config.train.lr_schedule  # built once
    assert config.train.lr_schedule(0) == 0.2


def test_data_table_kept_verbatim_with_source_default():
    assert tables(raw(data={"face_share": 0.5}))["data"] == {"source": "bundled", "face_share": 0.5}
    assert tables(raw(data={"source": "cifar10", "path": "/d"}))["data"] == {"source": "cifar10", "path": "/d"}


def test_int_accepted_where_a_float_is_expected():
    assert parse_config(raw(train={"lr": 1, "weight_decay": 0})).train.lr == 1


# --- the shipped configurations --------------------------------------------------------------

def file_says(name: str) -> dict:
    """The TOML file as read, without parse_config."""
    return tomllib.loads((CONFIGS / name).read_text())


@pytest.mark.parametrize("name", ["demo.toml", "le2012.toml"])
def test_shipped_config_holds_what_the_file_says_and_defaults(name):
    config, said = load_config(CONFIGS / name).as_dict(), file_says(name)
    for table in ("model", "train", "run"):
        for key, default in DEFAULTS[table].items():
            if key != "stages":  # written out with every default: checked below
                assert config[table][key] == said.get(table, {}).get(key, default), f"{table}.{key}"
    assert config["data"] == {"source": "bundled", **said.get("data", {})}
    assert stage_specs(config["model"]["stages"]) == [
        StageSpec(**{("lam" if key == "lambda" else key): value for key, value in stage.items()})
        for stage in said["model"]["stages"]]


def test_demo_toml():
    config = load_config(CONFIGS / "demo.toml")
    assert config.model.input == (48, 48, 1) and config.model.dtype == "float32"
    assert (config.model.whiten, config.model.whiten_eps) == (7, 0.1)
    specs = config.model.stages
    assert len(specs) == 2 and [(spec.k, spec.stride) for spec in specs] == [(8, 3), (4, 1)]
    assert all((spec.maps, spec.pool, spec.lcn, spec.lam, spec.tied, spec.norm) == (8, 2, 3, 0.8, True, "encoder")
               for spec in specs)
    assert (config.train.mode, config.train.optimizer, config.train.batch) == ("greedy", "sgd", 128)
    assert config.data.source == "bundled"


def test_le2012_toml():
    config = load_config(CONFIGS / "le2012.toml")
    assert config.model.input == (200, 200, 3)
    assert config.model.dtype == "float32"
    specs = config.model.stages
    assert len(specs) == 3
    for spec in specs:
        assert (spec.k, spec.maps, spec.pool, spec.lcn, spec.stride, spec.lam) == (18, 8, 5, 5, 1, 0.1)
    assert config.train.optimizer == "adagrad"  # as Le et al.


def test_stage_specs_maps_lambda_to_lam_and_defaults_optional_keys():
    (spec,) = stage_specs([{"k": 4, "maps": 2, "pool": 2, "lambda": 0.3, "stride": 2, "eps": 1e-3}])
    assert spec == StageSpec(k=4, maps=2, pool=2, lcn=5, stride=2, lam=0.3, eps=1e-3)


# --- unknown tables and keys -----------------------------------------------------------------

def test_unknown_table_named_with_accepted_ones():
    refused(raw(optim={"lr": 1}), "'optim'", "['data', 'model', 'run', 'train']")


def test_unknown_key_named_with_accepted_ones():
    message = refused(raw(train={"learning_rate": 0.1}), "train.learning_rate")
    assert str(sorted(DEFAULTS["train"])) in message
    refused(raw(run={"ranks": 4}), "run.ranks", "'backend'", "'grid'", "'replicas'")
    refused(raw(model={"depth": 3}), "model.depth", "'stages'")


@pytest.mark.parametrize("table", ["model", "train", "data", "run"])
def test_table_that_is_not_a_table(table):
    refused({**raw(), table: 5}, f"[{table}]", "table", "5")


# --- types -----------------------------------------------------------------------------------

@pytest.mark.parametrize("table, key, value, expected", [
    ("train", "lr", "fast", "float"),
    ("train", "lr", True, "float"),
    ("train", "momentum", [0.9], "float"),
    ("train", "steps", 1.5, "int"),
    ("train", "steps", 1.0, "int"),
    ("train", "steps", "100", "int"),
    ("train", "batch", 32.0, "int"),
    ("model", "seed", 0.5, "int"),
    ("model", "dtype", 32, "str"),
    ("model", "input", "32x32x3", "list"),
    ("model", "stages", {"k": 8}, "list"),
    ("train", "mode", ["greedy"], "str"),
    ("run", "replicas", 1.5, "int"),
])
def test_wrong_type_rejected_naming_key_type_and_value(table, key, value, expected):
    refused(raw(**{table: {key: value}}), f"{table}.{key}", expected, repr(value))


@pytest.mark.parametrize("table, key", [("train", "steps"), ("train", "batch"), ("model", "seed"),
                                        ("train", "warmup"), ("run", "replicas")])
def test_bool_rejected_where_an_int_is_expected(table, key):
    refused(raw(**{table: {key: True}}), f"{table}.{key}")


@pytest.mark.parametrize("table, key, value", [("model", "input", [32, 32, True]), ("run", "grid", [True, 1])])
def test_bool_rejected_as_a_size(table, key, value):
    refused(raw(**{table: {key: value}}), f"{table}.{key}")


# --- choices ---------------------------------------------------------------------------------

@pytest.mark.parametrize("table, key, value, accepted", [
    ("train", "mode", "lazy", ("greedy", "joint")),
    ("train", "optimizer", "adam", ("sgd", "adagrad")),
    ("train", "schedule", "linear", ("constant", "cosine", "step")),
    ("model", "dtype", "float16", ("float32", "float64")),
    ("run", "backend", "torch", ("numpy", "cupy")),
])
def test_choice_rejected_with_the_accepted_list(table, key, value, accepted):
    refused(raw(**{table: {key: value}}), f"{table}.{key}", str(accepted), repr(value))


@pytest.mark.parametrize("table, key, value", [
    ("train", "mode", "joint"), ("train", "optimizer", "adagrad"), ("train", "schedule", "step"),
    ("model", "dtype", "float64"), ("run", "backend", "cupy"),
])
def test_every_choice_accepted(table, key, value):
    assert tables(raw(**{table: {key: value}}))[table][key] == value


# --- model.input and stages ------------------------------------------------------------------

@pytest.mark.parametrize("value", [[32, 32], [32, 32, 3, 1], [], [32, 0, 3], [32, -1, 3], [32, 32.0, 3],
                                   [32, "32", 3]])
def test_malformed_model_input(value):
    refused(raw(model={"input": value}), "model.input", "[H, W, C]", str(value))


def test_stages_missing():
    message = refused({"train": {}}, "model.stages", "got none")
    assert "[[model.stages]]" in message
    refused(raw(model={"stages": []}), "model.stages", "got none")


def test_stage_not_a_table():
    refused(raw(model={"stages": [dict(STAGE), 7]}), "model.stages[1]", "table", "7")


def test_stage_unknown_key_named_with_accepted_ones():
    message = refused(raw(model={"stages": [dict(STAGE), {**STAGE, "size": 3}]}), "model.stages[1]", "'size'")
    assert str(sorted({"k", "maps", "pool", "lcn", "stride", "lambda", "eps", "tied", "norm"})) in message
    refused(raw(model={"stages": [{**STAGE, "lam": 0.1}]}), "model.stages[0]", "'lam'")  # TOML says lambda


@pytest.mark.parametrize("missing", ["k", "maps", "pool"])
def test_stage_missing_required_key_named(missing):
    stage = {key: value for key, value in STAGE.items() if key != missing}
    message = refused(raw(model={"stages": [stage]}), "model.stages[0]", f"missing keys ['{missing}']")
    assert "k, maps and pool required" in message


def test_stage_with_only_required_keys():
    assert tables(raw(model={"stages": [{"k": 3, "maps": 2, "pool": 2}]}))["model"]["stages"] == \
        [{"k": 3, "maps": 2, "pool": 2, "lcn": 5, "stride": 1, "lambda": 0.1, "eps": 1e-4, "tied": False,
          "norm": "none"}]


@pytest.mark.parametrize("key,value", [("tied", 1), ("tied", "yes"), ("norm", "rows"), ("norm", 1)])
def test_stage_tied_and_norm_checked(key, value):
    refused(raw(model={"stages": [{**STAGE, key: value}]}), "tied true or false and norm one of", repr(value))


@pytest.mark.parametrize("whiten,eps", [(4, 0.1), (-1, 0.1), (33, 0.1), (5, 0.0)])
def test_whitening_checked(whiten, eps):
    refused(raw(model={"whiten": whiten, "whiten_eps": eps}), "model.whiten 0 (none) or an odd side", str(whiten))


@pytest.mark.parametrize("side", [2, -3, 33])
def test_input_lcn_checked(side):
    refused(raw(model={"input_lcn": side}), "model.input_lcn 0 (none) or an odd window side", str(side))


def test_whitening_and_tied_unit_norm_stages_accepted():
    config = parse_config(raw(model={"whiten": 7, "whiten_eps": 0.05, "stages": [{**STAGE, "tied": True,
                                                                                   "norm": "encoder"}]}))
    assert (config.model.whiten, config.model.whiten_eps) == (7, 0.05)
    assert (config.model.stages[0].tied, config.model.stages[0].norm) == (True, "encoder")
    assert parse_config(config.as_dict()) == config


# --- counts, batch and replicas, grid --------------------------------------------------------

@pytest.mark.parametrize("table, key", [("train", "steps"), ("train", "batch"), ("train", "log_every"),
                                        ("run", "replicas")])
@pytest.mark.parametrize("value", [0, -3])
def test_counts_at_least_one(table, key, value):
    refused(raw(**{table: {key: value}}), f"{table}.{key} >= 1", str(value))


def test_batch_not_divisible_by_replicas():
    refused(raw(train={"batch": 10}, run={"replicas": 3}), "train.batch (10)", "run.replicas (3)", "divisible")
    assert parse_config(raw(train={"batch": 12}, run={"replicas": 3})).run.replicas == 3


def test_state_storage_must_fit_the_model():
    assert parse_config(raw(train={"state_dtype": "bfloat16", "state_rounding": "stochastic"})).train.state_dtype == "bfloat16"
    refused(raw(train={"state_dtype": "float16", "state_rounding": "stochastic"}), "train.state_dtype",
            'expected train.state_dtype = "bfloat16" with stochastic rounding', "'float16'")
    refused(raw(model={"dtype": "float64"}, train={"state_dtype": "bfloat16"}), "model.dtype",
            "expected float32 parameters for bfloat16 optimiser state, got ['float64']")


@pytest.mark.parametrize("grid", ["auto", [2, 1], [1, 1], [3, 4]])
def test_grid_forms_accepted(grid):
    assert tables(raw(run={"grid": grid}))["run"]["grid"] == grid


@pytest.mark.parametrize("grid", ["manual", "", [2], [2, 1, 1], [0, 1], [2, -1], [2.0, 1], ["2", 1], 4, {"rows": 2}])
def test_bad_grid_forms_rejected(grid):
    refused(raw(run={"grid": grid}), "run.grid", '"auto" or [rows, cols]', repr(grid))


# --- apply_overrides -------------------------------------------------------------------------

def test_overrides_dotted_keys_in_place_creating_tables():
    given = raw()
    out = apply_overrides(given, ["train.lr=0.5", "run.replicas=2", "data.source=folder"])
    assert out is given
    assert given["train"] == {"lr": 0.5} and given["run"] == {"replicas": 2} and given["data"] == {"source": "folder"}


def test_override_list_index():
    given = raw(model={"stages": [dict(STAGE), dict(STAGE)]})
    apply_overrides(given, ["model.stages.1.maps=4"])
    assert given["model"]["stages"] == [STAGE, {**STAGE, "maps": 4}]
    given = raw(model={"input": [32, 32, 3]})
    apply_overrides(given, ["model.input.2=1", "model.stages.0.lambda=0.25"])
    assert given["model"]["input"] == [32, 32, 1] and given["model"]["stages"][0]["lambda"] == 0.25


@pytest.mark.parametrize("text, value", [
    ("4", 4), ("-2", -2), ("0.05", 0.05), ("1e-3", 1e-3), ("adagrad", "adagrad"), ('"adagrad"', "adagrad"),
    ("'sgd'", "sgd"), ('"4"', "4"), ("[2, 1]", [2, 1]), ('["a", 1.5]', ["a", 1.5]), ("true", True),
    ("false", False), ("/data/my photos", "/data/my photos"), ("", ""),
])
def test_override_value_types(text, value):
    out = apply_overrides({}, [f"train.x={text}"])["train"]["x"]
    assert out == value and type(out) is type(value)


def test_override_strips_spaces_and_splits_at_first_equals():
    assert apply_overrides({}, [" train.lr = 0.5 "]) == {"train": {"lr": 0.5}}
    assert apply_overrides({}, ["data.path=a=b"]) == {"data": {"path": "a=b"}}


def test_later_override_wins():
    assert apply_overrides({}, ["train.lr=1", "train.lr=2.5"]) == {"train": {"lr": 2.5}}


@pytest.mark.parametrize("assignment", ["noequals", "=4", "train.lr"])
def test_override_without_key_value_form(assignment):
    with pytest.raises(ValueError, match=re.escape(f"expected --set key=value, got {assignment!r}")):
        apply_overrides({}, [assignment])


@pytest.mark.parametrize("assignment, part", [
    ("model.stages.2.maps=4", "'2'"), ("model.stages.-1.maps=4", "'-1'"), ("model.stages.first.maps=4", "'first'"),
    ("model.stages.5=4", "'5'"),
])
def test_override_index_out_of_range(assignment, part):
    given = raw(model={"stages": [dict(STAGE), dict(STAGE)]})
    with pytest.raises(ValueError, match=re.escape(f"expected an index in range(2), got {part}")) as info:
        apply_overrides(given, [assignment])
    assert assignment.partition("=")[0] in str(info.value)


@pytest.mark.parametrize("assignment", ["train.lr.x=1", "model.input.0.x=1"])
def test_override_through_a_scalar_is_a_value_error(assignment):
    given = raw(train={"lr": 0.5}, model={"input": [32, 32, 3]})
    with pytest.raises(ValueError, match=re.escape(assignment.partition("=")[0])):
        apply_overrides(given, [assignment])


# --- load_config -----------------------------------------------------------------------------

def test_load_config_applies_overrides_then_checks(tmp_path):
    config = load_config(CONFIGS / "demo.toml", ["train.lr=0.05", "model.stages.1.maps=4", "run.grid=[2, 1]",
                                                 "train.optimizer=adagrad"])
    assert config.train.lr == 0.05 and config.train.optimizer == "adagrad"
    assert config.model.stages[1].maps == 4 and config.model.stages[0].maps == 8
    assert config.run.grid == (2, 1)
    assert load_config(CONFIGS / "demo.toml").train.lr == 0.01  # the file is untouched


def test_load_config_errors_name_the_file():
    path = CONFIGS / "demo.toml"
    with pytest.raises(ValueError, match=re.escape(f"{path}: expected train.optimizer one of")):
        load_config(path, ["train.optimizer=adam"])
    with pytest.raises(ValueError, match=re.escape(f"{path}: --set model.stages.2.k")):
        load_config(path, ["model.stages.2.k=3"])
    with pytest.raises(ValueError, match=re.escape(f"{path}: expected --set key=value")):
        load_config(path, ["oops"])


def test_load_config_missing_file(tmp_path):
    for path in (tmp_path / "nope.toml", tmp_path):
        with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
            load_config(path)


def test_load_config_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\ninput = [32, 32\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not valid TOML")):
        load_config(path)


def test_load_config_accepts_str_path(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[[model.stages]]\nk = 3\nmaps = 2\npool = 2\n")
    assert load_config(str(path)).model.stages[0].k == 3


# --- to_toml ---------------------------------------------------------------------------------

def round_trip(config: Config) -> Config:
    return parse_config(tomllib.loads(config.to_toml()))


@pytest.mark.parametrize("name", ["demo.toml", "le2012.toml", "coates2013_11b.toml"])
def test_to_toml_round_trip_shipped(name, tmp_path):
    config = load_config(CONFIGS / name)
    assert round_trip(config) == config
    assert parse_config(config.as_dict()) == config  # what a checkpoint stores reads back the same
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config


def test_to_toml_round_trip_every_kind_of_value():
    config = parse_config({
        "model": {"input": [17, 23, 1], "seed": 123456789012, "dtype": "float64",
                  "stages": [{"k": 4, "maps": 2, "pool": 2, "lcn": 0, "stride": 2, "lambda": 0.3, "eps": 1e-12},
                             {"k": 3, "maps": 1, "pool": 1}]},
        "train": {"mode": "joint", "steps": 1, "lr": 1, "momentum": 0.0, "adagrad_eps": 1e-300, "final_lr": 0.1,
                  "weight_decay": 5e-4, "schedule": "step", "decay_factor": 1 / 3, "warmup": 0, "batch": 6},
        "data": {"source": "folder", "path": 'C:\\odd "dir"/café\tx', "flag": True, "off": False, "n": -7,
                 "ratio": -0.0, "big": 1e300, "tags": ["a", 'b"c'], "nested": [[1, 2], [3.5]], "empty": [],
                 "unicode": "\u00e9\u4e2d"},
        "run": {"grid": [3, 1], "replicas": 2, "backend": "cupy"},
    })
    back = round_trip(config)
    assert back == config
    assert type(back.train.lr) is int and type(back.data.options["ratio"]) is float
    assert repr(back.data.options["ratio"]) == "-0.0"


def test_to_toml_round_trip_auto_grid_and_infinity():
    config = parse_config(raw(train={"lr": float("inf")}))
    assert round_trip(config) == config


def test_to_toml_refuses_values_toml_cannot_hold():
    config = parse_config(raw(data={"extra": {"a": 1}}))
    with pytest.raises(TypeError, match="cannot write"):
        config.to_toml()
    with pytest.raises(TypeError, match="cannot write"):
        to_toml(config.as_dict())


def test_to_toml_round_trip_non_bmp_string():
    config = parse_config(raw(data={"source": "folder", "path": "/photos/\U0001F4F7"}))
    assert round_trip(config) == config
