"""``parse_model_spec``: a model name missing around a ``>`` (``a>``, ``>b``, ``a>>b``) or after a role's
``=`` is refused with its fix, not run as a shorter cascade (or an IndexError)."""

from __future__ import annotations

import pytest

from thrifty.models.routing import parse_model_spec


@pytest.mark.parametrize(
    ("spec", "example"),
    [
        ("sim/default>", "'sim/default' for one model, or 'sim/default>provider/stronger-model'"),
        (">openai/gpt-4o", "'openai/gpt-4o' for one model"),
        ("local/a>>openai/b", "e.g. 'local/a>openai/b'"),
        ("local/a> >openai/b", "e.g. 'local/a>openai/b'"),
        ("solver=local/a>", "'local/a' for one model"),
    ],
)
def test_a_name_missing_around_a_cascade_arrow_is_refused(spec: str, example: str) -> None:
    with pytest.raises(ValueError, match="a model name is missing before or after '>'") as caught:
        parse_model_spec(spec)
    assert "fix: name a model on each side of every '>'" in str(caught.value)
    assert example in str(caught.value)


def test_the_part_is_named_when_the_spec_has_several() -> None:
    with pytest.raises(ValueError, match=r"in 'verifier=openai/b>' \(fix: "):
        parse_model_spec("local/a;verifier=openai/b>")


@pytest.mark.parametrize("spec", ["verifier=", "solver=>", "local/a;judge= "])
def test_a_role_without_a_model_is_refused(spec: str) -> None:
    with pytest.raises(
        ValueError, match=r"role '(verifier|solver|judge)' names no model.*\(fix: give a model"
    ):
        parse_model_spec(spec)


def test_a_lone_arrow_names_no_model() -> None:
    with pytest.raises(ValueError, match=r"a model name is missing .*fix: give a model"):
        parse_model_spec(">")


def test_well_formed_specs_still_parse() -> None:
    cascade = parse_model_spec(" local/a > openai/b ")
    assert cascade is not None and cascade.models == ["local/a", "openai/b"]
    roles = parse_model_spec("local/a;verifier=openai/b;")  # a trailing ';' is still an empty part
    assert roles is not None and roles.models == ["local/a"] and roles.roles == {"verifier": "openai/b"}
