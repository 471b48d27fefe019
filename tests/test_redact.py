"""The Redactor scrubs secret values from strings, JSON values and header maps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.redact import REDACTED, Redactor, is_sensitive_header

KEY = "kid-4f1c9a:ksecret-77aa01"


def test_scrub_nested_values_and_keys() -> None:
    """A secret inside any string, key or nesting level is replaced."""
    redactor = Redactor([KEY])
    value = {
        "detail": f"bad key {KEY}!",
        "list": [1, None, f"x{KEY}y", ("t", KEY)],
        KEY: {"deep": [KEY]},
    }
    assert redactor.scrub(value) == {
        "detail": f"bad key {REDACTED}!",
        "list": [1, None, f"x{REDACTED}y", ("t", REDACTED)],
        REDACTED: {"deep": [REDACTED]},
    }


def test_key_halves_are_secrets() -> None:
    """Either half of an id:secret key is redacted on its own."""
    redactor = Redactor([KEY])
    assert redactor.text("id=kid-4f1c9a secret=ksecret-77aa01") == f"id={REDACTED} secret={REDACTED}"


def test_clean_values_are_not_copied() -> None:
    """A value without secrets comes back as the same object (no copy of large results)."""
    redactor = Redactor([KEY])
    value = {"images": [{"url": "https://cdn/x.png", "content": "a" * 10_000}], "seed": 3}
    assert redactor.scrub(value) is value
    assert Redactor().scrub(value) is value


def test_short_secrets_only_whole_strings() -> None:
    """A secret shorter than four characters is replaced only where a whole string equals it."""
    redactor = Redactor(["ab1"])
    assert redactor.scrub({"a": "ab1", "b": "xab1x"}) == {"a": REDACTED, "b": "xab1x"}
    assert bool(redactor) is True
    assert bool(Redactor([""])) is False


def test_json_escaped_form() -> None:
    """A secret echoed JSON-escaped inside raw text is caught too."""
    secret = 'pa"ss\\word'
    redactor = Redactor([secret])
    assert redactor.text('{"echo": "pa\\"ss\\\\word"}') == '{"echo": "[REDACTED]"}'
    assert redactor.text(f"raw {secret}") == f"raw {REDACTED}"


def test_longest_secret_wins() -> None:
    """A secret that contains another is redacted whole, leaving no tail."""
    redactor = Redactor(["token-1234", "token-1234-extended"])
    assert redactor.text("v=token-1234-extended;") == f"v={REDACTED};"


def test_headers() -> None:
    """Credential header names are redacted whatever the value; others are scrubbed."""
    redactor = Redactor(["s3cr3t-value"])
    assert redactor.headers(
        {"Authorization": "Key abc", "X-Session-Token": "t", "X-Trace": "id s3cr3t-value", "X-Fal-Runner-Hint": "h"}
    ) == {"Authorization": REDACTED, "X-Session-Token": REDACTED, "X-Trace": f"id {REDACTED}", "X-Fal-Runner-Hint": "h"}
    assert is_sensitive_header("proxy-authorization")
    assert is_sensitive_header("X-Api-Key")
    assert not is_sensitive_header("X-Fal-Queue-Priority")


def test_fragments_of_any_length_from_eight_characters() -> None:
    """Regression: a server echoing the first 20 characters of a key (or the tail, or a cut middle)
    got past the redactor, which knew only whole secrets and their halves. Any run of 8 or more
    characters of a secret is redacted, grown over as much of the secret as the text matches."""
    secret = "arg-5b0c9e1f7a2d4c6b8e0f1a3c5e7d9b1f"
    redactor = Redactor([secret])
    for piece in (secret[:20], secret[-13:], secret[7:15], secret[3:30], secret[:8]):
        assert redactor.text(f"<{piece}>") == f"<{REDACTED}>", piece
    # A piece followed by more text: only the secret's run is replaced, the rest stays.
    assert redactor.text(f"key={secret[:20]}zzz") == f"key={REDACTED}zzz"
    # Two separate pieces in one string, and the JSON-escaped form of a fragment.
    assert redactor.text(f"{secret[:9]} and {secret[-9:]}") == f"{REDACTED} and {REDACTED}"
    quoted = 'pa"ss\\word-0123456789'
    echoed = Redactor([quoted]).text('{"v": "ss\\\\word-0123"}')  # the quote is the secret's too
    assert REDACTED in echoed and "word-01" not in echoed and echoed.startswith('{"v": ')
    # Fewer than 8 characters of a longer secret is no leak worth damaging a result for.
    assert redactor.text(secret[:7]) == secret[:7]
    assert redactor.scrub({"a": [secret[10:30]]}) == {"a": [REDACTED]}


def test_short_key_halves_still_redacted() -> None:
    """The halves of an id:secret key are redacted alone even when shorter than a fragment."""
    redactor = Redactor(["abcde:fghij"])
    assert redactor.text("id abcde, secret fghij") == f"id {REDACTED}, secret {REDACTED}"


_SECRET_ALPHABET = "ab1:-\"\\\u00e9\n"  # includes what JSON escapes and non-ASCII: those secrets walk
_json_values = st.recursive(
    st.none() | st.integers() | st.text("ab1:-x\"\\\u00e9\n", max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text("ab1:x\"", max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(secrets=st.lists(st.text(_SECRET_ALPHABET, min_size=1, max_size=12), max_size=3),
       value=st.dictionaries(st.text("ab1:x", max_size=6), _json_values, max_size=4) | st.lists(_json_values))
def test_scrub_judged_from_the_json_text_equals_the_walk(secrets: list[str], value: object) -> None:
    """scrub decides a clean value from its JSON text in one search; whatever the secrets and the
    value, the result is the walk's, and a clean value is still returned as the same object."""
    redactor = Redactor(secrets)
    walked = redactor._scrub(value) if secrets and any(secrets) else value
    scrubbed = redactor.scrub(value)
    assert scrubbed == walked
    assert (scrubbed is value) == (walked is value)
