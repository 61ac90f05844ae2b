from tests.e2e.conftest import PersonFactory
def test_smoke(person: PersonFactory) -> None:
    a = person("alice")
    a.page.goto("/rooms/general")
    a.page.locator("#status[data-state=connected]").wait_for()
    assert a.console_errors == []
