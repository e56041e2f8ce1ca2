"""The prompt texts of DecAF's three prompting stages, verbatim (docs/method.md §3.7).

Source: Jung et al., "DecAF: Decomposed Attention Fusion ..." (arXiv 2510.19592), Appendix B, which
prints these templates; version 0 is the paper's main setting and versions 1-3 are its prompt
ablations (Table 10: P1, Table 12: P2, Table 11: P3). They are input data of the method, not
wording to improve: the rollout row of the last prompt token depends on every token, and the
paper's ablations move Ref-DAVIS J&F by up to 5 points with wording alone. Whitespace is part of
the data: the ``" \\n"`` separators, the trailing spaces of P1, the curly quotes of P2 v1/v2 and
the ``→`` arrow.

P1 (object class, positive map) and P3 (background, negative map) are asked with the visual input;
only their prefill attention is used. P2 (class choice) is text only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

SOURCE = "DecAF, arXiv 2510.19592, Appendix B"
PROMPT_VERSIONS = (0, 1, 2, 3)

# P1: object-class prompt. {sent}: the expression after the "." rule, lower-cased.
OBJECT_CLASS_TEMPLATES: Mapping[int, str] = {
    0: "{sent} \nWhat is the main object (or objects) referred to in the given expression or question? \n"
       "Focus on the **primary subject or agent** involved in the described action or behavior. "
       "Respond with a single word (e.g., 'cat', 'person', 'dog') that best describes the target object(s). ",
    1: "{sent} \nIdentify the primary object referred to in the expression and answer with a single word. \n",
    2: "{sent} \nIdentify the primary object referred to in the expression. \n"
       "Focus on the **primary subject or agent** involved in the described action or behavior. "
       "Respond with a single word (e.g., 'cat', 'person', 'dog') that best describes the target object(s). ",
    3: "{sent} \nDetermine the primary subject or agent mentioned in the expression or question, and provide "
       "the object's label within a single word or phrase. ",
}

# P2: object-category choice prompt. {ref_query}: the lower-cased expression; {obj_cls_list}: the
# lower-cased P1 answers joined by "," without spaces (duplicates kept). v3 takes no list.
CLASS_CHOICE_TEMPLATES: Mapping[int, str] = {
    0: "Given:\n- Expression: '{ref_query}'\n- Candidate object class list: {obj_cls_list}\n"
       "Goal: Identify the object class referred to by the expression. Instructions:\n"
       "1. If the expression is **clear**, rely on it directly (e.g., 'a person driving a car' → 'person').\n"
       "2. If the expression is **vague**, use the object class list to support your decision "
       "(e.g., check frequency and plausibility).\n"
       "3. Avoid defaulting to the most frequent class unless the expression lacks clarity.\n"
       "Output the most likely referred object class - just the label.\n",
    1: "Given the expression ‘{ref_query}’ and the candidate object classes {obj_cls_list}, select the single "
       "class label that best matches the object referred to in the expression.\n",
    2: "Using the expression ‘{ref_query}’ and the candidate object classes {obj_cls_list}, determine which "
       "object class the expression refers to.\n"
       "If the reference is explicit, rely on the expression; if ambiguous, use the class list as support.\n"
       "Output only the most likely object class.\n",
    3: "Given:\n- Expression: '{ref_query}'\n"
       "Goal: Identify the object class referred to by the expression. "
       "(e.g., 'a person driving a car' → 'person').\n"
       "Output the most likely referred object class - just the label.\n",
}

# P3: background prompt; the same text, still saying "video", for the per-frame image prompts.
# {obj_name}: P2's stripped, lower-cased answer; v3 takes the expression ({sent}) instead.
BACKGROUND_TEMPLATES: Mapping[int, str] = {
    0: "Describe the background scene of the video, excluding any {obj_name}. "
       "Answer the question using a single word or phrase.",
    1: "Describe the background scene of the video. Answer the question using a single word or phrase.",
    2: "Describe the background of the video while excluding any {obj_name}, using a single word or short phrase.",
    3: "Describe the background scene of the video, excluding the objects referred to in the given expression "
       "or question '{sent}'. Answer the question using a single word or phrase.",
}


def check_version(version: int, stage: str) -> int:
    """The version itself when it is one of PROMPT_VERSIONS; ValueError naming the stage otherwise."""
    if not isinstance(version, int) or isinstance(version, bool) or version not in PROMPT_VERSIONS:
        raise ValueError(f"{stage} prompt version must be one of {', '.join(map(str, PROMPT_VERSIONS))}; "
                         f"got {version!r}")
    return int(version)


def normalize_expression(text: str) -> str:
    """Append "." unless the expression already ends with "?" or "." (§2.1); nothing else changes.

    The expression is otherwise kept as given (no stripping), as the reference does.
    """
    return text if text.endswith(("?", ".")) else text + "."


def object_class_prompt(expression: str, version: int = 0) -> str:
    """P1 for an expression that has been through :func:`normalize_expression`."""
    return OBJECT_CLASS_TEMPLATES[check_version(version, "P1")].format(sent=expression.lower())


def class_choice_prompt(expression: str, candidates: Sequence[str], version: int = 0) -> str:
    """P2: choose obj_name among the P1 answers; duplicates kept so their frequency is visible."""
    template = CLASS_CHOICE_TEMPLATES[check_version(version, "P2")]
    joined = ",".join(candidate.lower() for candidate in candidates)
    return template.format(ref_query=expression.lower(), obj_cls_list=joined)


def background_prompt(obj_name: str, version: int = 0, expression: str | None = None) -> str:
    """P3 with the P2 answer; version 3 names the expression instead, so it needs ``expression``."""
    template = BACKGROUND_TEMPLATES[check_version(version, "P3")]
    if version == 3 and expression is None:
        raise ValueError("P3 version 3 quotes the expression: pass expression=")
    return template.format(obj_name=obj_name, sent=(expression or "").lower())
