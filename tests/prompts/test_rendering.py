"""The pure template module: placeholders, typed variables, text-only substitution."""

import pytest

from prompts.rendering import (
    TemplateError, VariableError, extract_variables, has_placeholders, parameter_problems, render_messages,
    template_hash, validate_messages,
)

TEMPLATE = [
    {"role": "system", "content": "You help {{company}} customers."},
    {"role": "user", "content": "I am {{hc:age:number}}, premium={{hc:premium:boolean}}: {{ question }}"},
]


def test_variables_are_found_in_order_with_types():
    assert [(v.name, v.type) for v in extract_variables(TEMPLATE)] == [
        ("company", "any"), ("age", "number"), ("premium", "boolean"), ("question", "any"),
    ]


def test_render_replaces_every_placeholder_and_leaves_other_keys():
    out = render_messages(TEMPLATE, {"company": "Acme", "age": 42, "premium": True, "question": "Why?"})
    assert out == [
        {"role": "system", "content": "You help Acme customers."},
        {"role": "user", "content": "I am 42, premium=true: Why?"},
    ]
    assert TEMPLATE[0]["content"] == "You help {{company}} customers.", "the template is not modified"


def test_placeholders_inside_content_parts_are_rendered():
    messages = [{"role": "user", "content": [{"type": "text", "text": "Describe {{thing}}"},
                                             {"type": "image_url", "image_url": {"url": "https://x/{{img}}.png"}}]}]
    out = render_messages(messages, {"thing": "a cat", "img": "cat"})
    assert out[0]["content"][0]["text"] == "Describe a cat"
    assert out[0]["content"][1]["image_url"]["url"] == "https://x/cat.png"


def test_values_are_inserted_as_text_never_evaluated():
    messages = [{"role": "user", "content": "{{a}} and {{b}}"}]
    out = render_messages(messages, {"a": "{{b}}", "b": "{% raw %}{{ 7*7 }}"})
    assert out[0]["content"] == "{{b}} and {% raw %}{{ 7*7 }}"


def test_non_string_values_of_untyped_variables_become_json_text():
    out = render_messages([{"role": "user", "content": "{{n}} {{obj}} {{flag}}"}],
                          {"n": 3.5, "obj": {"k": [1, "é"]}, "flag": False})
    assert out[0]["content"] == '3.5 {"k":[1,"é"]} false'


def test_missing_variable_is_named_and_extra_ones_ignored():
    with pytest.raises(VariableError) as exc:
        render_messages(TEMPLATE, {"company": "Acme", "age": 1, "premium": False, "unused": 1})
    assert exc.value.name == "question" and "missing variable 'question'" in str(exc.value)


@pytest.mark.parametrize("name,value,expected", [
    ("age", "abc", "variable 'age' must be a number"),
    ("age", True, "variable 'age' must be a number"),
    ("age", "NaN", "variable 'age' must be a finite number"),
    ("premium", "maybe", "variable 'premium' must be a boolean"),
    ("premium", 1, "variable 'premium' must be a boolean"),
])
def test_typed_variables_are_validated(name, value, expected):
    values = {"company": "Acme", "age": 3, "premium": True, "question": "q", name: value}
    with pytest.raises(VariableError) as exc:
        render_messages(TEMPLATE, values)
    assert expected in str(exc.value) and exc.value.name == name


def test_typed_values_accept_their_string_forms():
    out = render_messages(TEMPLATE, {"company": "A", "age": " 7.5 ", "premium": "TRUE", "question": "q"})
    assert out[1]["content"] == "I am 7.5, premium=true: q"


def test_string_type_requires_a_string():
    with pytest.raises(VariableError, match="variable 'city' must be a string, got 5"):
        render_messages([{"role": "user", "content": "{{hc:city:string}}"}], {"city": 5})
    assert render_messages([{"role": "user", "content": "{{hc:city}}"}], {"city": "Oslo"})[0]["content"] == "Oslo"


def test_bad_declarations_are_template_errors():
    with pytest.raises(TemplateError, match="unknown type 'date'"):
        extract_variables([{"role": "user", "content": "{{hc:when:date}}"}])
    with pytest.raises(TemplateError, match="declared both as number and as boolean"):
        extract_variables([{"role": "user", "content": "{{hc:x:number}} {{hc:x:boolean}}"}])
    # An untyped use next to a typed one takes the declared type.
    assert [(v.name, v.type) for v in extract_variables(
        [{"role": "user", "content": "{{x}} {{hc:x:number}}"}])] == [("x", "number")]


def test_has_placeholders():
    assert has_placeholders([{"role": "user", "content": "{{user_input}}"}])
    assert not has_placeholders([{"role": "user", "content": "no braces {here}"}])
    assert not has_placeholders(None)


def test_template_hash_is_stable_and_content_sensitive():
    assert template_hash(TEMPLATE, "m", {"a": 1, "b": 2}) == template_hash(list(TEMPLATE), "m", {"b": 2, "a": 1})
    assert template_hash(TEMPLATE, "m", {}) != template_hash(TEMPLATE, "m2", {})


def test_message_and_parameter_validation_names_the_problem():
    assert validate_messages([]) == ["must be a non-empty list of messages"]
    assert validate_messages([{"content": "x"}]) == ["message 1 needs a 'role' (e.g. system, user, assistant)"]
    assert validate_messages([{"role": "user", "content": 5}]) == [
        "message 1: 'content' must be a string or a list of content parts"]
    assert parameter_problems({"temperature": 3, "max_tokens": 0, "model": "x"}) == [
        "'model' is set on its own, not in parameters",
        "temperature must be a number between 0 and 2",
        "max_tokens must be a positive integer",
    ]
