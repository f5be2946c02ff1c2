"""broker.config: a flag wins over its environment variable, which wins over
the default; a bad variable is reported by name."""

from __future__ import annotations

import pytest

from broker.config import OPTIONS, Config, from_env_and_args


def no_flags() -> dict[str, object]:
    return {option.name: None for option in OPTIONS}


def test_defaults_apply_without_flags_or_environment() -> None:
    assert from_env_and_args(no_flags(), environ={}) == Config()


def test_environment_wins_over_default() -> None:
    config = from_env_and_args(no_flags(), environ={"BROKER_PORT": "9001"})
    assert config.port == 9001


def test_flag_wins_over_environment() -> None:
    config = from_env_and_args({**no_flags(), "port": 9002}, environ={"BROKER_PORT": "9001"})
    assert config.port == 9002


def test_unrelated_environment_is_ignored() -> None:
    config = from_env_and_args(no_flags(), environ={"PORT": "1", "BROKER_PORTS": "2"})
    assert config.port == Config().port


@pytest.mark.parametrize(
    ("variable", "text", "field", "value"),
    [
        ("BROKER_REDIS_URL", "redis://127.0.0.1:1/0", "redis_url", "redis://127.0.0.1:1/0"),
        ("BROKER_NODE_ID", "n-env", "node_id", "n-env"),
        ("BROKER_SAY_RATE", "2.5", "say_rate", 2.5),
        ("BROKER_MAX_ROOMS_PER_SESSION", "3", "max_rooms_per_session", 3),
        ("BROKER_COMPRESSION", "yes", "compression", True),
        ("BROKER_COMPRESSION", "0", "compression", False),
        ("BROKER_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ],
)
def test_environment_values_are_parsed_to_the_field_type(
    variable: str, text: str, field: str, value: object
) -> None:
    config = from_env_and_args(no_flags(), environ={variable: text})
    assert getattr(config, field) == value


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("BROKER_PORT", "eighty"),
        ("BROKER_SAY_RATE", "fast"),
        ("BROKER_COMPRESSION", "maybe"),
    ],
)
def test_bad_environment_value_is_a_value_error_naming_the_variable(
    variable: str, text: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        from_env_and_args(no_flags(), environ={variable: text})


def test_bad_environment_value_is_ignored_when_the_flag_is_given() -> None:
    config = from_env_and_args({**no_flags(), "port": 9003}, environ={"BROKER_PORT": "eighty"})
    assert config.port == 9003


def test_every_option_is_a_config_field_with_a_flag_and_a_variable() -> None:
    fields = set(Config.__dataclass_fields__)
    for option in OPTIONS:
        assert option.name in fields
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.env == "BROKER_" + option.name.upper()
    assert {option.name for option in OPTIONS} == fields
