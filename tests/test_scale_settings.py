"""The settings of several nodes: each bad value stops start-up with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.settings import SettingsError
from tests.conftest import make_settings


def test_defaults_suit_one_node_and_a_lease_outlives_missed_heartbeats(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    assert s.redis_url is None and s.redis_prefix == "chat"
    assert s.presence_heartbeat_seconds * 2 <= s.presence_ttl_seconds <= 15


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PRESENCE_TTL_SECONDS": "4", "PRESENCE_HEARTBEAT_SECONDS": "3"}, "at most half"),
        ({"PRESENCE_TTL_SECONDS": "0.5"}, "PRESENCE_TTL_SECONDS: expected a number >= 1.0"),
        ({"REDIS_PREFIX": "has space"}, "REDIS_PREFIX: expected"),
        ({"NODE_ID": "a/b"}, "NODE_ID: expected"),
        ({"REDIS_BACKOFF_MAX_SECONDS": "0"}, "REDIS_BACKOFF_MAX_SECONDS: expected"),
        ({"REDIS_TIMEOUT_SECONDS": "0"}, "REDIS_TIMEOUT_SECONDS: expected a number >= 0.05"),
        ({"FANOUT_GAP_SECONDS": "soon"}, "FANOUT_GAP_SECONDS: expected a number"),
        ({"PUBLISH_QUEUE_SIZE": "0"}, "PUBLISH_QUEUE_SIZE: expected a"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL: expected"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(tmp_path, **env)
    assert message in str(info.value) and "\n" not in str(info.value)
