"""Secrets never reach a message."""

from __future__ import annotations

from ebb.errors import MASK, redact


def test_redact_masks_every_secret_value() -> None:
    assert redact("login as bob with hunter2", ["hunter2", "bob", ""]) == f"login as {MASK} with {MASK}"


def test_redact_masks_an_address_as_socket_errors_quote_it() -> None:
    """Seen on a real cluster: an address from a Secret leaked through redis-py's "Connect call failed
    ('10.1.2.3', 6390)" into a KEDAScalerFailed Event."""
    message = "cannot reach Redis at 10.1.2.3:6390: Error 111. Connect call failed ('10.1.2.3', 6390)."
    masked = redact(message, ["10.1.2.3:6390"])
    assert "10.1.2.3" not in masked and "6390" not in masked
    assert redact("connect to [fd00::5]:6379 failed: ('fd00::5', 6379)", ["[fd00::5]:6379"]).count("fd00") == 0


def test_redact_leaves_short_host_names_and_urls_alone_unless_quoted_whole() -> None:
    assert redact("redis scaler: redis:6379 refused", ["redis:6379"]) == f"redis scaler: {MASK} refused"
    assert redact("GET https://api.example.com:8443/x", ["https://api.example.com:8443"]) == f"GET {MASK}/x"
