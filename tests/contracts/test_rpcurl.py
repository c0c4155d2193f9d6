"""RPC URLs in messages: what is redacted, what is kept, and when plain http is flagged."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from contracts import insecure_rpc_warning, redact_in, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://rpc.example", "https://rpc.example"),
        ("https://rpc.example/", "https://rpc.example"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://mainnet.infura.io/v3/0123456789abcdef", "https://mainnet.infura.io/***"),
        ("https://user:pass@rpc.example:8443/", "https://***@rpc.example:8443"),
        ("https://rpc.example/?apikey=SECRET", "https://rpc.example?***"),
        ("https://rpc.example#SECRET", "https://rpc.example#***"),
        ("http://[::1]:8545/x", "http://[::1]:8545/***"),
        ("not a url", "***"),
        ("http://host:notaport/", "***"),
    ],
)
def test_redact_url_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_in_removes_secrets_that_requests_quotes() -> None:
    """requests names the path (with the API key) in its connection errors, not the URL."""
    url = "http://apiuser:SECRET-TOKEN@127.0.0.1:1/v3/KEY123?apikey=QUERYSECRET"
    try:
        requests.post(url, json={}, timeout=5)
    except requests.ConnectionError as exc:
        text = str(exc)
    assert "KEY123" in text  # what would have been printed
    cleaned = redact_in(f"{url} failed: {text}", url)
    for secret in ("SECRET-TOKEN", "apiuser", "KEY123", "QUERYSECRET"):
        assert secret not in cleaned
    assert cleaned.startswith("http://***@127.0.0.1:1/***?*** failed: ")


_secret = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=8, max_size=40)


@given(user=_secret, password=_secret, path=_secret, query=_secret)
def test_no_part_of_the_credentials_survives(
    user: str, password: str, path: str, query: str
) -> None:
    url = f"https://{user}:{password}@rpc.example:8443/v2/{path}?key={query}"
    message = f"error at {url}: url: /v2/{path}?key={query} user {user} pass {password}"
    cleaned = redact_in(message, url)
    for secret in (user, password, path, query):
        assert secret not in cleaned
    assert "rpc.example:8443" in cleaned


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://10.0.0.5:8545", True),
        ("http://rpc.example", True),
        ("HTTP://rpc.example", True),
        ("http://0.0.0.0:8545", True),
        ("https://rpc.example", False),
        ("http://127.0.0.1:8545", False),
        ("http://127.8.9.10:8545", False),
        ("http://localhost:8545", False),
        ("http://[::1]:8545", False),
    ],
)
def test_plain_http_is_flagged_unless_it_stays_on_this_machine(url: str, warned: bool) -> None:
    warning = insecure_rpc_warning(url)
    assert (warning is not None) == warned
    if warning:
        assert warning.startswith("warning: --rpc ") and "use https://" in warning
