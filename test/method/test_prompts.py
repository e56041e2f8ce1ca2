"""The published prompts (docs/method.md §3.7), rendered text compared with literal expected strings.

The expected strings are written out here by hand from the paper's Appendix B (arXiv 2510.19592),
not built from decaf_ros's templates, so a changed space, quote or arrow fails.
"""
from __future__ import annotations

import pytest

from decaf_ros.core import prompts
from decaf_ros.core.config import DecafConfig

# (raw expression, after the "." rule and lower-casing)
DOG = ("The Dog Running", "the dog running.")
CAT = ("Which Cat is jumping?", "which cat is jumping?")
MUG = ("  the RED mug.", "  the red mug.")  # kept as given: no stripping, "." already there

P1_FOCUS = ("Focus on the **primary subject or agent** involved in the described action or behavior. "
            "Respond with a single word (e.g., 'cat', 'person', 'dog') that best describes the target object(s). ")
P1_EXPECTED = {
    0: "{} \nWhat is the main object (or objects) referred to in the given expression or question? \n" + P1_FOCUS,
    1: "{} \nIdentify the primary object referred to in the expression and answer with a single word. \n",
    2: "{} \nIdentify the primary object referred to in the expression. \n" + P1_FOCUS,
    3: "{} \nDetermine the primary subject or agent mentioned in the expression or question, and provide the "
       "object's label within a single word or phrase. ",
}


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize("raw, sent", [DOG, CAT, MUG])
def test_object_class_prompt_every_version(raw: str, sent: str, version: int) -> None:
    text = prompts.object_class_prompt(prompts.normalize_expression(raw), version)
    assert text == P1_EXPECTED[version].format(sent)


def test_object_class_prompt_literal_v0() -> None:
    assert prompts.object_class_prompt("the dog running.") == (
        "the dog running. \n"
        "What is the main object (or objects) referred to in the given expression or question? \n"
        "Focus on the **primary subject or agent** involved in the described action or behavior. "
        "Respond with a single word (e.g., 'cat', 'person', 'dog') that best describes the target object(s). ")


def test_class_choice_prompt_literal_every_version() -> None:
    expression, candidates = "Which Cat is jumping?", ["Cat", "dog", "cat"]
    expected = {
        0: "Given:\n- Expression: 'which cat is jumping?'\n- Candidate object class list: cat,dog,cat\n"
           "Goal: Identify the object class referred to by the expression. Instructions:\n"
           "1. If the expression is **clear**, rely on it directly (e.g., 'a person driving a car' \u2192 'person').\n"
           "2. If the expression is **vague**, use the object class list to support your decision (e.g., check "
           "frequency and plausibility).\n"
           "3. Avoid defaulting to the most frequent class unless the expression lacks clarity.\n"
           "Output the most likely referred object class - just the label.\n",
        1: "Given the expression \u2018which cat is jumping?\u2019 and the candidate object classes cat,dog,cat, "
           "select the single class label that best matches the object referred to in the expression.\n",
        2: "Using the expression \u2018which cat is jumping?\u2019 and the candidate object classes cat,dog,cat, "
           "determine which object class the expression refers to.\n"
           "If the reference is explicit, rely on the expression; if ambiguous, use the class list as support.\n"
           "Output only the most likely object class.\n",
        3: "Given:\n- Expression: 'which cat is jumping?'\n"
           "Goal: Identify the object class referred to by the expression. (e.g., 'a person driving a car' "
           "\u2192 'person').\nOutput the most likely referred object class - just the label.\n",
    }
    for version, text in expected.items():
        assert prompts.class_choice_prompt(expression, candidates, version) == text, version


@pytest.mark.parametrize("version", [0, 1, 2])
def test_class_choice_prompt_joins_seventeen_answers_without_spaces(version: int) -> None:
    answers = ["Person"] * 9 + ["man", "person", "Rider"] + ["horse"] * 5
    text = prompts.class_choice_prompt("A man riding a horse.", answers, version)
    joined = "person,person,person,person,person,person,person,person,person,man,person,rider," \
             "horse,horse,horse,horse,horse"
    assert joined in text and "a man riding a horse." in text
    assert "'a man riding a horse.'" in text if version == 0 else "\u2018a man riding a horse.\u2019" in text


def test_background_prompt_literal_every_version() -> None:
    expected = {
        0: "Describe the background scene of the video, excluding any cat. "
           "Answer the question using a single word or phrase.",
        1: "Describe the background scene of the video. Answer the question using a single word or phrase.",
        2: "Describe the background of the video while excluding any cat, using a single word or short phrase.",
        3: "Describe the background scene of the video, excluding the objects referred to in the given expression "
           "or question 'which cat is jumping?'. Answer the question using a single word or phrase.",
    }
    for version, text in expected.items():
        assert prompts.background_prompt("cat", version, expression="Which Cat is jumping?") == text, version
    assert prompts.background_prompt("man on the left") == (
        "Describe the background scene of the video, excluding any man on the left. "
        "Answer the question using a single word or phrase.")


def test_background_v3_needs_the_expression() -> None:
    with pytest.raises(ValueError, match="expression"):
        prompts.background_prompt("cat", 3)


def test_normalize_expression_is_the_dot_rule_only() -> None:
    assert prompts.normalize_expression("The Dog") == "The Dog."
    assert prompts.normalize_expression("which dog?") == "which dog?"
    assert prompts.normalize_expression("a cat.") == "a cat."
    assert prompts.normalize_expression("a cat ") == "a cat ."  # as given, then "."
    assert prompts.normalize_expression("dogs!") == "dogs!."


@pytest.mark.parametrize("version", [-1, 4, True, 1.0, "0"])
def test_unknown_version_is_refused(version) -> None:
    with pytest.raises(ValueError, match="P1 prompt version"):
        prompts.object_class_prompt("a cat.", version)
    with pytest.raises(ValueError, match="P2 prompt version"):
        prompts.class_choice_prompt("a cat.", ["cat"], version)
    with pytest.raises(ValueError, match="P3 prompt version"):
        prompts.background_prompt("cat", version, expression="a cat.")


def test_config_prompt_versions_validated_independently() -> None:
    DecafConfig(prompt_object_version=1, prompt_choice_version=3, prompt_background_version=2).validate()
    for name in ("prompt_object_version", "prompt_choice_version", "prompt_background_version"):
        with pytest.raises(ValueError, match=name):
            DecafConfig(**{name: 4}).validate()
