"""The shared scrubber: every key format the issue lists, exact environment values, and no damage to
ordinary text."""

from __future__ import annotations

import doctest

import pytest

import thrifty.redact
from thrifty.redact import MASK, environment_secrets, redact, redact_value

KEYS = {
    "openai": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "openai-legacy": "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6h",
    "anthropic": "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5q-Rs8tUv1wXy4z",
    "gemini": "AIzaSyAb3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "huggingface": "hf_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb",
    "github": "ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3d",
    "github-fine": "github_pat_11Ab3dEf6hIj9kLm2nOp5q_Rs8tUv1wXy4z",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "xai": "xai-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "groq": "gsk_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "replicate": "r8_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "slash-plus": "sk-Ab3dEf6h+Ij9kLm2/nOp5qRs8tUv1wXy4z==",
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_every_key_format_is_masked(kind: str) -> None:
    key = KEYS[kind]
    for text in (
        f"PermissionError: 401 invalid api key {key}",
        f"request to https://api.test/v1/models?key={key}&alt=json failed",
        f'{{"error": "bad credentials", "api_key": "{key}"}}',
        f"Authorization: Bearer {key}",
    ):
        out = redact(text)
        assert key not in out, (kind, out)
        # no tail of the key survives either (the part after a '+' or '/', the signature of a JWT)
        for piece in key.replace("+", " ").replace("/", " ").replace(".", " ").split():
            if len(piece) >= 12:
                assert piece not in out, (kind, piece, out)
        assert MASK in out


def test_exact_environment_values_are_masked_whatever_their_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "plain-words-that-look-harmless-42")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to mask safely
    monkeypatch.setenv("UNRELATED", "plain-words-that-look-harmless-43")
    assert "plain-words-that-look-harmless-42" in environment_secrets()
    out = redact("upstream said: plain-words-that-look-harmless-42 / abc / plain-words-that-look-harmless-43")
    assert "harmless-42" not in out
    assert "abc" in out and "harmless-43" in out
    monkeypatch.setenv("ACME_API_KEY", "a-rotated-value-1234567")  # the cache follows the environment
    assert redact("a-rotated-value-1234567") == MASK


@pytest.mark.parametrize(
    "text",
    [
        "Morgan Llywelyn (born December 3, 1937) is an American-Irish author.",
        "The key to the city was given to the mayor in 1990.",
        'Result of search({"query": "Lion of Ireland"}): Title: Lion of Ireland',
        "ask-me-anything and task-force are words; risk-taking too.",
        "2 + 2 = 4 and https://example.org/page?id=12&lang=en",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_user_password_in_urls_and_nested_values() -> None:
    out = redact("could not connect to postgresql://app:s3cr3t-pass@db.local/runs")
    assert "s3cr3t-pass" not in out and "postgresql://app:" in out
    # an unescaped @ in the password: its tail was left, read as part of the host
    assert redact("postgresql://bob:pl@inHunter9@127.0.0.1:1/db") == "postgresql://bob:***@127.0.0.1:1/db"
    assert redact("https://u:p@h.example/x?y=a@b") == "https://u:***@h.example/x?y=a@b"
    nested = redact_value({"detail": [f"key {KEYS['groq']}", ("x", KEYS["aws"])], "n": 3})
    assert nested == {"detail": ["key gsk_***", ("x", "AKIA***")], "n": 3}


def test_the_prefix_stays_so_the_error_still_says_which_key() -> None:
    assert redact(f"invalid {KEYS['huggingface']}") == "invalid hf_***"


def test_doctests() -> None:
    assert doctest.testmod(thrifty.redact).failed == 0


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # an api_bases URL in a web_search error: the observation, trace and --json showed it whole
        (
            "cannot reach api_bases.searxng (http://127.0.0.1:1/?api_token=supersecret99): refused",
            "cannot reach api_bases.searxng (http://127.0.0.1:1/?api_token=***): refused",
        ),
        (
            "https://b.s3/x?X-Amz-Signature=abcdef0123&X-Amz-Credential=AK12",
            "https://b.s3/x?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("http://h/p;jsessionid=ABCDEF123456?x=1", "http://h/p;jsessionid=***?x=1"),
        ("?access_key=abcdef123456", "?access_key=***"),
        ("MCP stderr: token=stderrsecret123456 secret=zzzzyyyy99", "MCP stderr: token=*** secret=***"),
        ('{"token": "abcdefgh"}', '{"token": "***"}'),
        ("tavily key tvly-AbCdEf1234567890abcdef", "tavily key tvly-***"),
        # prose and ordinary parameters stay as they are
        ("max_tokens=4096, monkey=banana, ?keys=1&q=token, the token: abcd", None),
        ("page?sort=key&id=5", None),
    ],
)
def test_more_secret_shapes_are_masked_and_prose_is_not(text: str, masked: str | None) -> None:
    assert redact(text) == (text if masked is None else masked)
