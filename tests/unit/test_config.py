"""broker.config: a flag wins over its environment variable, which wins over
the default; a bad variable is reported by name."""

from __future__ import annotations

import os

import pytest

from broker.config import OPTIONS, Config, OptionError, from_env_and_args, join_budget


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


def test_flag_text_is_parsed_like_its_variable() -> None:
    config = from_env_and_args({**no_flags(), "port": "9004", "log_level": "warning"}, environ={})
    assert (config.port, config.log_level) == (9004, "WARNING")


@pytest.mark.parametrize(
    ("field", "text", "problem"),
    [
        ("port", "-1", "must be from 1 to 65535, not -1"),
        ("port", "0", "must be from 1 to 65535, not 0"),
        ("port", "65536", "must be from 1 to 65535, not 65536"),
        ("port", "70000", "must be from 1 to 65535, not 70000"),
        ("port", "eighty", "must be a whole number, not 'eighty'"),
        ("max_connections", "-1", "must be at least 0, not -1"),
        ("max_message_size", "-5", "must be at least 1, not -5"),
        ("max_message_size", "0", "must be at least 1, not 0"),
        ("say_burst", "0", "must be at least 1, not 0"),
        ("ping_timeout", "0", "must be more than 0, not 0"),
        ("idle_timeout", "-1", "must be at least 0, not -1"),
        ("idle_timeout", "inf", "must be a finite number, not 'inf'"),
        ("say_rate", "nan", "must be a finite number, not 'nan'"),
        ("workers", "0", "must be at least 1, or 'auto' (one per core), not 0"),
        ("workers", "many", "must be a whole number of at least 1, or 'auto', not 'many'"),
        ("log_level", "verbose", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("log_format", "xml", "must be one of text, json, not 'xml'"),
        ("redis_url", "nonsense", "must be a redis://, rediss:// or unix:// URL"),
        ("redis_url", "http://127.0.0.1:6379/0", "must be a redis://, rediss:// or unix:// URL"),
        ("redis_url", "redis://127.0.0.1:port/0", "has a port that is not a number"),
        ("redis_url", "redis://127.0.0.1:6379/zero", "must end with a database number"),
        ("redis_url", "redis://:6379/0", "must name a host"),
        ("redis_url", "unix://", "must name a socket path"),
        ("jwt_secret", "short", "must be at least 32 bytes long for HS256"),
        ("namespace", "a:b", "no ':'"),
        ("node_id", "two words", "without spaces"),
        ("host", " ", "must be an address or a host name"),
        ("api_key", "short", "must be at least 16 characters long, not 5"),
    ],
)
def test_bad_value_is_one_line_naming_flag_variable_and_problem(
    field: str, text: str, problem: str
) -> None:
    option = next(option for option in OPTIONS if option.name == field)

    with pytest.raises(OptionError) as flag_error:
        from_env_and_args({**no_flags(), field: text}, environ={})
    with pytest.raises(OptionError) as env_error:
        from_env_and_args(no_flags(), environ={option.env: text})

    for error in (flag_error.value, env_error.value):
        message = str(error)
        assert message.startswith(f"{option.flag} ({option.env}): ")
        assert problem in message
        assert "\n" not in message
        assert error.option is option


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://redis",
        "rediss://user:pass@cache.example.com:6380/2",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_redis_urls_of_every_supported_form_are_accepted(url: str) -> None:
    assert from_env_and_args({**no_flags(), "redis_url": url}, environ={}).redis_url == url


def test_a_config_built_in_code_is_checked_too() -> None:
    with pytest.raises(OptionError, match=r"^--port \(BROKER_PORT\): must be from 1 to 65535"):
        Config(port=70000)


def test_a_secret_of_32_bytes_is_enough() -> None:
    secret = "s" * 32
    assert from_env_and_args({**no_flags(), "jwt_secret": secret}, environ={}).jwt_secret == secret


def test_secret_length_counts_bytes_not_characters() -> None:
    with pytest.raises(OptionError, match="not 31"):
        Config(jwt_secret="é" * 15 + "x")


def test_workers_auto_is_one_per_core() -> None:
    config = from_env_and_args(no_flags(), environ={"BROKER_WORKERS": "auto"})
    assert config.workers == (os.cpu_count() or 1)


@pytest.mark.parametrize(("text", "value"), [("JSON", "json"), (" text ", "text")])
def test_log_format_is_case_insensitive(text: str, value: str) -> None:
    config = from_env_and_args(no_flags(), environ={"BROKER_LOG_FORMAT": text})
    assert config.log_format == value


def test_zero_keeps_its_documented_meaning_where_the_help_gives_one() -> None:
    zeros = {"max_connections": "0", "max_rooms_per_session": "0", "idle_timeout": "0"}
    config = from_env_and_args({**no_flags(), **zeros}, environ={})
    assert (config.max_connections, config.max_rooms_per_session, config.idle_timeout) == (0, 0, 0)


def test_every_option_with_a_value_has_a_check_or_takes_free_text() -> None:
    free_text = {"jwt_public_key", "jwt_algorithms", "jwt_audience", "jwt_issuer"}
    free_text |= {"allowed_origins"}
    unchecked = {o.name for o in OPTIONS if o.check is None and o.metavar is not None}
    assert unchecked == free_text


# --- join/leave rate (issue 11) --------------------------------------------------


def test_join_rate_and_burst_are_read_from_the_environment() -> None:
    environ = {"BROKER_JOIN_RATE": "2.5", "BROKER_JOIN_BURST": "500"}
    config = from_env_and_args(no_flags(), environ=environ)
    assert (config.join_rate, config.join_burst) == (2.5, 500)


def test_join_budget_is_at_least_twice_the_room_limit() -> None:
    assert join_budget(Config(max_rooms_per_session=300, join_burst=10)) == 600


def test_join_budget_keeps_a_larger_burst() -> None:
    assert join_budget(Config(max_rooms_per_session=10, join_burst=100)) == 100


def test_default_join_budget_covers_rejoining_every_room() -> None:
    config = Config()
    assert join_budget(config) >= 2 * config.max_rooms_per_session


def test_a_negative_join_rate_is_refused() -> None:
    with pytest.raises(OptionError, match="--join-rate"):
        Config(join_rate=-1)
