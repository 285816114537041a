"""scope_for and step_key: awkward thread ids become scopes the real agent accepts."""

from __future__ import annotations

import pytest
from conftest import scopes_of

from mcpwatch_client import Client, InvalidRequest, scope_for, step_key

AWKWARD_IDS = [
    "user 42/conv 7",  # space and slash
    "a/b/c",
    "x" * 300,  # over the 200-character limit
    "gespräch-ü",  # non-ASCII
    "会話",
    "h:looks-hashed",  # valid, but in the hashed form's namespace
    "",  # empty
    "{6f1c0b2e-uuid}",
]


@pytest.mark.parametrize("thread_id", AWKWARD_IDS)
def test_awkward_ids_are_hashed_into_scopes_the_agent_accepts(
    client: Client, thread_id: str
) -> None:
    scope = scope_for(thread_id)
    assert scope.startswith("h:")
    assert len(scope) == 50
    assert scope == scope_for(thread_id), "the same id always gives the same scope"
    assert client.call_tool("demo", "counter", scope=scope).text == "1"
    assert scope in scopes_of(client)
    assert client.close_scope(scope) == 1


def test_valid_ids_pass_through_unchanged() -> None:
    assert scope_for("conv-42") == "conv-42"
    assert scope_for("user@example.com:thread.7_b") == "user@example.com:thread.7_b"
    assert scope_for("x" * 200) == "x" * 200


def test_the_agent_refuses_the_raw_awkward_ids(client: Client) -> None:
    for thread_id in ("user 42/conv 7", "x" * 300, "gespräch"):
        with pytest.raises(InvalidRequest) as refused:
            client.call_tool("demo", "echo", {"message": "x"}, scope=thread_id)
        assert refused.value.status == 400
        assert refused.value.not_processed


def test_a_namespace_separates_equal_thread_ids() -> None:
    assert scope_for("conv-7", "alice") == "alice:conv-7"
    assert scope_for("conv-7", "alice") != scope_for("conv-7", "bob")
    assert scope_for("conv 7", "alice") != scope_for("conv 7", "bob")
    assert scope_for("conv 7", "alice") != scope_for("conv 7")
    # Joining namespace and id with ":" would make these two the same readable scope.
    assert scope_for("b:c", "a") == "a:b:c" == scope_for("c", "a:b")
    # Hashed ones keep them apart (the separator is a NUL, which no id holds).
    assert scope_for("b c", "a") != scope_for("c", "a b")


def test_a_hashed_prefix_namespace_is_hashed_too() -> None:
    assert scope_for("x", "h").startswith("h:")
    assert scope_for("x", "h") != "h:x"


def test_step_keys_differ_in_every_part_and_fit_the_header() -> None:
    base = step_key("conv-1", "call-1", "demo", "counter")
    variants = {
        step_key("conv-2", "call-1", "demo", "counter"),
        step_key("conv-1", "call-2", "demo", "counter"),
        step_key("conv-1", "call-1", "other", "counter"),
        step_key("conv-1", "call-1", "demo", "echo"),
        step_key(None, "call-1", "demo", "counter"),
        step_key("conv-1", "call-1", "demo", "counter", task="tools:abc"),
    }
    assert base not in variants
    assert len(variants) == 6
    assert base == step_key("conv-1", "call-1", "demo", "counter")
    assert len(base) <= 255
    assert base.isascii()
    assert base.isprintable()
