"""The one prompt object: a system prompt, worked examples and the user-message template.

The build config resolves the teacher's and the student's `ChatPrompt` once, when it loads
(`config.task.teacher_prompt`, `config.task.student_prompt`); the teacher stage, the
teacher-logits scorer, training, the bench rows, the cache keys and the bundle's
`prompt_format.json` all read those two objects, so none can drift from another.

Example:
    >>> from pipeline.prompts import ChatPrompt, Turn
    >>> p = ChatPrompt(system="Route the ticket.", user_template="Ticket: {prompt}",
    ...                few_shot=(Turn(user="My card was charged twice", assistant="billing"),))
    >>> [m["role"] for m in p.messages("Where is my parcel?")]
    ['system', 'user', 'assistant', 'user']
    >>> p.messages("Where is my parcel?")[-1]["content"]
    'Ticket: Where is my parcel?'
"""

from __future__ import annotations

import string
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class Turn(BaseModel):
    """One worked example: a user message (the raw prompt text) and the assistant's answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str
    assistant: str


class ChatPrompt(BaseModel):
    """How a model is asked: system prompt, few-shot turns, then `user_template` around the
    row's text (its one placeholder is `{prompt}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    user_template: str = "{prompt}"
    few_shot: tuple[Turn, ...] = ()

    @field_validator("user_template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write literal braces as {{{{ }}}}") from None
        if names != {"prompt"}:
            raise ValueError("the template needs exactly one placeholder, {prompt} "
                             f"(found {sorted(names) or 'none'}); literal braces are {{{{ }}}}")
        return value

    def user(self, text: str) -> str:
        """The user message for one row's text."""
        return self.user_template.format(prompt=text)

    def prefix(self) -> list[dict[str, str]]:
        """The messages shared by every row: system prompt and worked examples (the part a
        KV cache can keep between rows)."""
        messages = [{"role": "system", "content": self.system}]
        for shot in self.few_shot:
            messages += [{"role": "user", "content": self.user(shot.user)},
                         {"role": "assistant", "content": shot.assistant}]
        return messages

    def messages(self, text: str) -> list[dict[str, str]]:
        """The whole chat for one row, ready for the model's answer."""
        return [*self.prefix(), {"role": "user", "content": self.user(text)}]

    def format_file(self, chat_template: Any = None) -> dict[str, Any]:
        """The `prompt_format.json` a bundle ships: the exact messages around a user's text."""
        return {"system": self.system, "user_template": self.user_template,
                "few_shot": [t.model_dump() for t in self.few_shot],
                "messages": self.messages("{prompt}"), "chat_template": chat_template}
