"""The VAPID key and the Web Push settings (chat.notify.settings, chat.notify.vapid)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chat.notify.settings import endpoint_allowed
from chat.notify.vapid import Vapid, new_private_key
from chat.settings import Settings, SettingsError

BASE = {"SECRET_KEY": "test secret key, long enough"}


def test_a_key_is_generated_once_into_var_with_mode_0600(tmp_path: Path) -> None:
    env = {**BASE, "CHAT_VAR_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    path = tmp_path / "vapid_private_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings.from_env(env).vapid_private_key == first.vapid_private_key
    assert len(Vapid(first.vapid_private_key, "mailto:a@b.example").public_key) == 87


def test_a_key_given_in_settings_is_used_on_every_node(tmp_path: Path) -> None:
    key = new_private_key()
    settings = Settings.from_env({**BASE, "CHAT_VAR_DIR": str(tmp_path), "VAPID_PRIVATE_KEY": key})
    assert settings.vapid_private_key == key
    assert not (tmp_path / "vapid_private_key").exists()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("VAPID_PRIVATE_KEY", "not a key", "VAPID_PRIVATE_KEY: expected a P-256 private key"),
        ("VAPID_PRIVATE_KEY", "AAAA", "VAPID_PRIVATE_KEY"),
        ("VAPID_SUBJECT", "ops@example.com", "VAPID_SUBJECT: expected mailto:"),
        ("PUSH_ENDPOINT_HOSTS", "fcm.googleapis.com, bad host!", "PUSH_ENDPOINT_HOSTS"),
        ("PUSH_QUEUE_SIZE", "0", "PUSH_QUEUE_SIZE"),
        ("PUSH_SENDERS", "0", "PUSH_SENDERS"),
    ],
)
def test_bad_push_settings_are_one_clear_line(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({**BASE, "CHAT_VAR_DIR": str(tmp_path), name: value})


def test_a_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "vapid_private_key").write_text("garbage\n")
    with pytest.raises(SettingsError, match="vapid_private_key is not valid"):
        Settings.from_env({**BASE, "CHAT_VAR_DIR": str(tmp_path)})


def test_the_subject_defaults_to_an_https_public_url(tmp_path: Path) -> None:
    env = {**BASE, "CHAT_VAR_DIR": str(tmp_path)}
    assert Settings.from_env(env).vapid_subject == "mailto:admin@localhost"
    https = Settings.from_env({**env, "PUBLIC_URL": "https://chat.example.com"})
    assert https.vapid_subject == "https://chat.example.com"


def test_endpoints_go_to_the_listed_push_services_only() -> None:
    hosts = ("fcm.googleapis.com", "push.services.mozilla.com", "127.0.0.1")
    assert endpoint_allowed("https://fcm.googleapis.com/fcm/send/x", hosts)
    assert endpoint_allowed("https://updates.push.services.mozilla.com/wpush/v2/x", hosts)
    assert endpoint_allowed("http://127.0.0.1:8000/push", hosts)
    assert not endpoint_allowed("https://notfcm.googleapis.com.evil.example/x", hosts)
    assert not endpoint_allowed("https://evilfcm.googleapis.com/x", ("fcm.googleapis.com",))
    assert not endpoint_allowed("http://10.0.0.1/x", ("10.0.0.1",))
    assert endpoint_allowed("https://anything.example/x", ("*",))
    assert not endpoint_allowed("http://anything.example/x", ("*",))


@pytest.mark.parametrize(
    "subject", ["https://chat.example.com:8443", "https://chat.example.com/contact", "mailto:x"]
)
def test_a_subject_push_services_would_refuse_stops_start_up(tmp_path: Path, subject: str) -> None:
    with pytest.raises(SettingsError, match="VAPID_SUBJECT"):
        Settings.from_env({**BASE, "CHAT_VAR_DIR": str(tmp_path), "VAPID_SUBJECT": subject})


def test_an_https_public_url_with_a_port_leaves_the_default_subject(tmp_path: Path) -> None:
    env = {**BASE, "CHAT_VAR_DIR": str(tmp_path), "PUBLIC_URL": "https://chat.example.com:8443"}
    assert Settings.from_env(env).vapid_subject == "mailto:admin@localhost"


def test_the_cli_prints_a_key_every_node_can_be_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chat.__main__ import main

    assert main(["vapid-key"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    name, _, key = line.partition("=")
    assert name == "VAPID_PRIVATE_KEY"
    settings = Settings.from_env({**BASE, "CHAT_VAR_DIR": str(tmp_path), name: key})
    assert settings.vapid_private_key == key
