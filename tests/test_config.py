"""Experiments: TOML → validated, immutable objects; bad files get one error naming file, table, key."""
from __future__ import annotations

import dataclasses

import pytest

from harness._core.config import load_experiment
from harness._core.errors import ConfigError
from harness._core.plugins import get_plugin_manager
from tests.fakes import FakePlugin


@pytest.fixture
def registry():
    return get_plugin_manager(builtins=(), extra=[FakePlugin()], autoload=False).registry


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_defaults_fill_every_slot(tmp_path, registry):
    exp = load_experiment(write(tmp_path, '[experiment]\nname = "x"\n'), registry)
    assert exp.choice("optimizer").name == "ppo"
    assert exp.choice("optimizer").options.clip == 0.2
    assert exp.to_dict()["optimizer"] == {"name": "ppo", "ppo": {"clip": 0.2, "kl_coef": 0.05, "epochs": 4, "mode": "fast"}}


def test_wrong_type_names_file_table_key_and_expectation(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n[optimizer.ppo]\nclip = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_experiment(path, registry)
    msg = str(err.value)
    assert str(path) in msg and "[optimizer.ppo]" in msg and "clip" in msg and "expected a number" in msg


def test_unknown_key_lists_allowed_keys(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n[optimizer.ppo]\nclipp = 0.1\n')
    with pytest.raises(ConfigError, match=r"unknown key 'clipp'.*Allowed keys: clip, kl_coef, epochs, mode"):
        load_experiment(path, registry)


def test_a_misspelt_key_table_or_name_gets_the_closest_allowed_one(tmp_path, registry):
    def error(body, overrides=()):
        with pytest.raises(ConfigError) as err:
            load_experiment(write(tmp_path, '[experiment]\nname = "x"\n' + body), registry, overrides)
        return str(err.value)

    msg = error("[optimizer.ppo]\nkl_coeff = 0.1\n")
    assert "[optimizer.ppo] unknown key 'kl_coeff' (did you mean `kl_coef`?). Allowed keys: clip, kl_coef" in msg
    assert "unknown key 'zzz'. Allowed keys:" in error("[optimizer.ppo]\nzzz = 0.1\n")  # nothing close: no guess
    assert "unknown table [optimiser] (did you mean `optimizer`?)" in error('[optimiser]\nname = "ppo"\n')
    assert "[optimizer] unknown key 'pp' (did you mean `ppo`?)" in error("[optimizer.pp]\nclip = 0.1\n")
    assert "[optimizer] name: unknown optimizer 'ppp' (did you mean `ppo`?)" in error('[optimizer]\nname = "ppp"\n')
    assert "[evaluation.win_rat] is not a registered evaluator (did you mean `win_rate`?)" in error(
        "[evaluation.win_rat]\nx = 1\n")
    assert "(did you mean `kl_coef`?)" in error("", ["optimizer.ppo.kl_coeff=0.1"])


def test_a_string_for_an_array_option_says_how_to_write_an_array(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n[evaluation]\nevaluators = "win_rate"\n')
    with pytest.raises(ConfigError) as err:
        load_experiment(path, registry)
    assert "[evaluation] evaluators = 'win_rate': expected an array (TOML: evaluators = [\"a\", \"b\"])" in str(err.value)
    with pytest.raises(ConfigError, match=r"evaluators = 'win_rate': expected an array .*\(from --set"):
        load_experiment(write(tmp_path, '[experiment]\nname = "x"\n'), registry, ["evaluation.evaluators=win_rate"])


def test_unknown_component_lists_available(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n[optimizer]\nname = "trpo"\n')
    with pytest.raises(ConfigError, match=r"\[optimizer\] name: unknown optimizer 'trpo'. Available: a2c, ppo"):
        load_experiment(path, registry)


def test_unknown_table_and_literal(tmp_path, registry):
    with pytest.raises(ConfigError, match=r"unknown table \[optimiser\]"):
        load_experiment(write(tmp_path, '[experiment]\nname = "x"\n[optimiser]\nname="ppo"\n'), registry)
    with pytest.raises(ConfigError, match=r"mode = 'medium': expected 'fast' or 'slow'"):
        load_experiment(write(tmp_path, '[experiment]\nname = "x"\n[optimizer.ppo]\nmode = "medium"\n'), registry)


def test_options_of_unselected_components_are_validated_too(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n[optimizer]\nname = "a2c"\n[optimizer.ppo]\nclip = -1\n')
    with pytest.raises(ConfigError, match=r"\[optimizer.ppo\] clip = -1"):
        load_experiment(path, registry)


def test_set_overrides_and_parses_values(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n')
    exp = load_experiment(path, registry, ["optimizer.ppo.kl_coef=0.01", "experiment.name=renamed"])
    assert exp.choice("optimizer").options.kl_coef == 0.01 and exp.name == "renamed"
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_experiment(path, registry, ["optimizer.ppo.kl_coef"])


def test_resolved_experiment_is_immutable(tmp_path, registry):
    exp = load_experiment(write(tmp_path, '[experiment]\nname = "x"\n'), registry)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.source = "other"
    with pytest.raises(Exception):
        exp.choice("optimizer").options.clip = 0.3
    with pytest.raises(TypeError):
        exp.slots["optimizer"] = None


def test_missing_name_and_bad_toml(tmp_path, registry):
    with pytest.raises(ConfigError, match="needs a name"):
        load_experiment(write(tmp_path, "[experiment]\nseed = 1\n"), registry)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(write(tmp_path, "[experiment\n"), registry)
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.toml", registry)


def test_hash_changes_only_with_the_tables_it_covers(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n')
    a = load_experiment(path, registry)
    b = load_experiment(path, registry, ["optimizer.ppo.kl_coef=0.2"])
    assert a.hash_of("sft", "model") == b.hash_of("sft", "model")
    assert a.hash_of("optimizer") != b.hash_of("optimizer")


def test_extends_merges_tables_key_by_key(tmp_path, registry):
    (tmp_path / "base.toml").write_text('[experiment]\nname = "base"\nseed = 3\n[optimizer.ppo]\nclip = 0.3\nkl_coef = 0.2\n')
    child = tmp_path / "child.toml"
    child.write_text('[experiment]\nname = "child"\nextends = "base.toml"\n[optimizer.ppo]\nkl_coef = 0.01\n')
    exp = load_experiment(child, registry)
    ppo = exp.choice("optimizer").options
    assert exp.name == "child" and exp.seed == 3 and ppo.clip == 0.3 and ppo.kl_coef == 0.01


def test_extends_errors_name_the_file_and_the_problem(tmp_path, registry):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('[experiment]\nname = "a"\nextends = "b.toml"\n')
    b.write_text('[experiment]\nname = "b"\nextends = "a.toml"\n')
    with pytest.raises(ConfigError, match=r"extends = 'a.toml' makes a cycle"):
        load_experiment(a, registry)
    a.write_text('[experiment]\nname = "a"\nextends = "missing.toml"\n')
    with pytest.raises(ConfigError, match=r"a.toml: \[experiment\] extends = 'missing.toml': no such file"):
        load_experiment(a, registry)


def test_set_through_a_value_says_so(tmp_path, registry):
    path = write(tmp_path, '[experiment]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"--set 'experiment.name.x=1': 'name' is a value, not a table"):
        load_experiment(path, registry, ["experiment.name.x=1"])


def test_stored_experiment_toml_is_self_contained(tmp_path, registry):
    """The copy a run keeps needs no file outside the run dir: extends merged in, --set and the variant applied."""
    from harness._core.pipeline import resolved_toml

    (tmp_path / "base.toml").write_text('[experiment]\nname = "b"\nseed = 3\n[optimizer.ppo]\nclip = 0.3\n')
    child = tmp_path / "sub" / "child.toml"
    child.parent.mkdir()
    child.write_text('[experiment]\nname = "c"\nextends = "../base.toml"\n[compare.variants.fast]\n"optimizer.ppo.kl_coef" = 0.01\n')
    variant = load_experiment(child, registry, ["optimizer.ppo.epochs=8"]).variants["fast"]
    stored = tmp_path / "elsewhere" / "experiment.toml"
    stored.parent.mkdir()
    stored.write_text(resolved_toml(variant))
    assert "extends =" not in stored.read_text()
    again = load_experiment(stored, registry)
    assert again.to_dict()["optimizer"] == variant.to_dict()["optimizer"]
    assert (again.choice("optimizer").options.clip, again.choice("optimizer").options.epochs) == (0.3, 8)
    assert (again.seed, again.name) == (3, "c")
