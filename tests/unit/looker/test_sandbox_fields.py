"""Pure helpers of the Looker sandbox and the plan: the fields syntax, the content hash, the breaker."""

from __future__ import annotations

from guardian.looker.plan import content_hash
from guardian.sandbox.looker.app import parse_fields, select


def test_fields_syntax_with_nesting() -> None:
    tree = parse_fields("id,title,folder(id,name),x(y(z))")
    assert tree == {"id": None, "title": None, "folder": {"id": None, "name": None}, "x": {"y": {"z": None}}}
    row = {"id": "1", "title": "t", "folder": {"id": "2", "name": "n", "parent_id": None}, "other": 3}
    assert select(row, parse_fields("id,folder(name)")) == {"id": "1", "folder": {"name": "n"}}
    assert select([row], None) == [row]


def test_content_hash_changes_with_any_action_or_policy() -> None:
    actions = [("1", "soft_delete", "old"), ("2", "purge", "trash")]
    base = content_hash("i", {"a": 1}, actions)
    assert base == content_hash("i", {"a": 1}, list(actions))
    assert base != content_hash("i", {"a": 2}, actions)
    assert base != content_hash("i", {"a": 1}, actions[:1])
    assert base != content_hash("j", {"a": 1}, actions)
