"""Settings: defaults that run with nothing set, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.settings import Settings, SettingsError


def test_defaults_need_nothing(tmp_path: Path) -> None:
    s = Settings.from_env({"CHAT_VAR_DIR": str(tmp_path)})
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'chat.sqlite3'}"
    assert s.redis_url is None
    assert s.history_limit == 50
    assert s.max_frame_bytes == 16 * 1024 and s.max_text_chars == 4000
    assert s.send_queue_size == 256
    assert (s.chat_rate_per_second, s.chat_burst) == (10.0, 20)
    assert s.max_connections_per_user == 20
    assert (s.client_id_ttl_seconds, s.client_id_memory) == (7 * 24 * 3600, 1000)
    assert s.position_check_seconds == 2.0
    assert len(s.secret_key) == 32


def test_generated_secret_is_kept_with_mode_0600(tmp_path: Path) -> None:
    first = Settings.from_env({"CHAT_VAR_DIR": str(tmp_path)})
    second = Settings.from_env({"CHAT_VAR_DIR": str(tmp_path)})
    assert first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_secret_key_from_environment_is_shared_by_every_node(tmp_path: Path) -> None:
    env = {"CHAT_VAR_DIR": str(tmp_path), "SECRET_KEY": "a shared secret of some length"}
    assert Settings.from_env(env).secret_key == Settings.from_env(dict(env)).secret_key
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CHAT_PORT", "eighty", "CHAT_PORT: expected an integer, got 'eighty'"),
        ("CHAT_PORT", "70000", "CHAT_PORT: expected an integer >= 0 and <= 65535, got 70000"),
        ("HISTORY_LIMIT", "0", "HISTORY_LIMIT: expected an integer >= 1"),
        ("COOKIE_SECURE", "maybe", "COOKIE_SECURE: expected 1/0"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: expected a sqlite+aiosqlite://"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: expected a redis://"),
        ("ALLOWED_ORIGINS", "example.com", "ALLOWED_ORIGINS: expected comma-separated"),
        ("SECRET_KEY", "short", "SECRET_KEY: expected at least 16 characters"),
        ("CHAT_RATE_PER_SECOND", "0", "CHAT_RATE_PER_SECOND: expected a number >= 0.01"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: expected one of"),
        ("TRUSTED_PROXIES", "10.0.0.1, nginx", "TRUSTED_PROXIES: expected comma-separated IP"),
        ("PUBLIC_URL", "chat.example.com", "PUBLIC_URL: expected http(s)://host[:port]"),
        ("PUBLIC_URL", "https://chat.example.com/app", "PUBLIC_URL: expected http(s)://host"),
        ("MAX_FORM_BYTES", "10", "MAX_FORM_BYTES: expected an integer >= 1024"),
        ("BODY_TIMEOUT_SECONDS", "0", "BODY_TIMEOUT_SECONDS: expected a number >= 0.1"),
        ("PASSWORD_HASHES_IN_FLIGHT", "0", "PASSWORD_HASHES_IN_FLIGHT: expected an integer >= 1"),
        ("PASSWORD_HASH_QUEUE", "-1", "PASSWORD_HASH_QUEUE: expected an integer >= 0"),
        ("ROOMS_PER_HOUR", "0", "ROOMS_PER_HOUR: expected an integer >= 1"),
        ("MAX_PUBLIC_ROOMS", "0", "MAX_PUBLIC_ROOMS: expected an integer >= 1"),
        ("CLIENT_ID_MEMORY", "0", "CLIENT_ID_MEMORY: expected an integer >= 1"),
        ("CLIENT_ID_TTL_SECONDS", "10", "CLIENT_ID_TTL_SECONDS: expected an integer >= 60"),
        ("POSITION_CHECK_SECONDS", "0", "POSITION_CHECK_SECONDS: expected a number >= 0.1"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"CHAT_VAR_DIR": str(tmp_path), name: value})
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_allowed_origins_are_normalised(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"CHAT_VAR_DIR": str(tmp_path), "ALLOWED_ORIGINS": "https://a.example/, http://b:8080"}
    )
    assert s.allowed_origins == frozenset({"https://a.example", "http://b:8080"})


def test_trusted_proxies_and_public_url_are_parsed(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "CHAT_VAR_DIR": str(tmp_path),
            "TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/24,::1",
            "PUBLIC_URL": "https://Chat.Example.com/",
        }
    )
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/24", "::1/128"]
    assert s.public_url == "https://chat.example.com"
    defaults = Settings.from_env({"CHAT_VAR_DIR": str(tmp_path)})
    assert defaults.trusted_proxies == () and defaults.public_url is None


def test_the_instance_name_is_trimmed_and_bounded() -> None:
    assert Settings.from_env({"INSTANCE_NAME": "  Acme   Team "}).instance_name == "Acme Team"
    assert Settings.from_env({}).instance_name == "chat"
    with pytest.raises(SettingsError, match="INSTANCE_NAME: expected 1 to 40 characters"):
        Settings.from_env({"INSTANCE_NAME": "x" * 41})
