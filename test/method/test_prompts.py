"""The prompt texts of §3.2-3.4: structure of P1, P2 and P3 as the pipeline sends them."""
from __future__ import annotations

from decaf_ros.core import prompts


def test_normalize_expression() -> None:
    assert prompts.normalize_expression("  The Dog ") == "The Dog."
    assert prompts.normalize_expression("which dog?") == "which dog?"
    assert prompts.normalize_expression("a cat.") == "a cat."


def test_object_class_prompt_structure() -> None:
    text = prompts.object_class_prompt("The Dog Running.")
    lines = text.split(" \n")
    assert lines[0] == "the dog running." and len(lines) == 3
    assert lines[1].endswith("?")
    assert lines[2].startswith("**") and lines[2].count("**") == 2 and text.endswith(" ")
    assert not text.endswith("  ")
    assert all(word in lines[2] for word in ("'cat'", "'person'", "'dog'"))


def test_class_choice_prompt_structure() -> None:
    text = prompts.class_choice_prompt("The Dog.", ["Dog", "cat", "dog"])
    lines = text.split("\n")
    assert lines[0] == "Given:"
    assert lines[1].startswith("- ") and "'the dog.'" in lines[1]
    assert lines[2].startswith("- ") and lines[2].endswith("dog,cat,dog")
    assert lines[3].startswith("Goal")
    assert [line[:2] for line in lines if line[:1].isdigit()] == ["1.", "2.", "3."]
    assert "person" in text and "label only" in lines[-1]


def test_background_prompt() -> None:
    text = prompts.background_prompt("dog")
    assert "any dog" in text and "video" in text and text.count(".") == 1
