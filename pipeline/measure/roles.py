"""The bench rows' roles: what each row of the report is, named once.

A row's `role` is one of these (a `StrEnum`: it is its string in JSON and compares equal
to it, so reports stay readable and old ones load). Code names a role by its member, never
by a string literal, so a misspelt role is an AttributeError at once, not a silent `.get()`
miss.

Example:
    >>> from pipeline.measure.roles import Role, twin
    >>> Role.DISTILLED == "distilled"
    True
    >>> twin(Role.DISTILLED, under_grammar=True)
    <Role.DISTILLED_GRAMMAR: 'distilled_grammar'>
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    TEACHER = "teacher"
    BASE_FP = "base_fp"  # the undistilled student, unquantized export
    BASE = "base"  # the undistilled student, the target's quantization
    BASE_FEWSHOT = "base_fewshot"  # the same with the teacher's few-shot prompt
    LABELS_TORCH = "labels_torch"  # the student fine-tuned on the user's labels alone (fp32)
    DISTILLED_TORCH = "distilled_torch"  # the fp32 student on torch: the reference
    DISTILLED_FP = "distilled_fp"  # the unquantized export (F16 GGUF, fp32 ONNX / IR)
    DISTILLED = "distilled"  # the shipped artifact
    # the distilled artifacts decoded the other way (information, not shipped): under the
    # task's grammar when the target decodes freely, free when it ships the grammar
    DISTILLED_FP_GRAMMAR = "distilled_fp_grammar"
    DISTILLED_GRAMMAR = "distilled_grammar"
    DISTILLED_FP_FREE = "distilled_fp_free"
    DISTILLED_FREE = "distilled_free"


# The report's row order.
ORDER = tuple(Role)
BASE_ROLES = (Role.BASE_FP, Role.BASE, Role.BASE_FEWSHOT)
# the rows that answer with the student's prompt (scored for invented spans etc.)
STUDENT_ROLES = (Role.BASE_FP, Role.BASE, Role.DISTILLED_FP, Role.DISTILLED,
                 Role.DISTILLED_FP_GRAMMAR, Role.DISTILLED_GRAMMAR, Role.DISTILLED_FP_FREE,
                 Role.DISTILLED_FREE)


def twin(role: Role, under_grammar: bool) -> Role:
    """A distilled row's twin decoded the other way (`under_grammar`: the grammar twin of a
    freely decoded row, else the free twin of a constrained one)."""
    return Role(f"{role}_{'grammar' if under_grammar else 'free'}")
