"""Prompt texts of the three prompting stages (§3.2-3.4, reference version 0).

P1 (object class, positive map) and P3 (background, negative map) are asked with the visual
input; only their prefill attention is used. P2 (class choice) is text only. The layout
rules (lower-casing, " \\n" separators, trailing space, "," joins with duplicates kept) are
part of the reference behaviour; the rollout row of the last token depends on them.
"""
from __future__ import annotations

from collections.abc import Sequence

_P1_QUESTION = "Which main object or objects does the expression or question above refer to?"
_P1_FOCUS = "**Focus on the primary subject or agent of the described action or behavior.**"
_P1_FORMAT = "Answer with a single word, such as 'cat', 'person', or 'dog'."

_P2_TEMPLATE = (
    "Given:\n"
    "- Expression: '{expression}'\n"
    "- Candidate classes: {candidates}\n"
    "Goal: Identify the object class that the expression refers to.\n"
    "Instructions:\n"
    "1. If the expression is clear, use it directly (e.g., 'the person driving a car' -> 'person').\n"
    "2. If the expression is vague, choose using the frequency and plausibility of the classes in the list.\n"
    "3. Do not default to the most frequent class unless the expression is unclear.\n"
    "Answer with the class label only."
)

_P3_TEMPLATE = (
    "Describe the background scene of the video, excluding any {obj_name}, "
    "and answer in a single word or phrase."
)


def normalize_expression(text: str) -> str:
    """Strip, and end with "." unless the expression already ends with "?" or "." (§2.1)."""
    text = text.strip()
    if not text.endswith(("?", ".")):
        text += "."
    return text


def object_class_prompt(expression: str) -> str:
    """P1: expression, question, two instructions; " \\n" separators and a trailing space."""
    return f"{expression.lower()} \n{_P1_QUESTION} \n{_P1_FOCUS} {_P1_FORMAT} "


def class_choice_prompt(expression: str, candidates: Sequence[str]) -> str:
    """P2: choose obj_name among the P1 answers; duplicates kept so frequency is visible."""
    joined = ",".join(c.strip().lower() for c in candidates)
    return _P2_TEMPLATE.format(expression=expression.lower(), candidates=joined)


def background_prompt(obj_name: str) -> str:
    """P3: one sentence; says "video" also for the per-frame image prompts (as the reference)."""
    return _P3_TEMPLATE.format(obj_name=obj_name)
