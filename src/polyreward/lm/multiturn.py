"""Multi-turn tool rollouts: the model calls Python tools, the environment answers, turns are kept.

Each assistant turn is one sampled message. When it contains ``<tool_call>{"name": ..., "arguments":
{...}}</tool_call>`` blocks, the environment runs the tools and appends a ``tool`` message with
``<tool_response>`` blocks; otherwise (or after ``max_turns``) the trajectory ends. The trajectory's
tokens are the sampled tokens exactly (never re-tokenized), interleaved with the chat template's
tokens for the tool messages, which are not trained on.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from polyreward.lm.rollout import Rollout, encode_prompts, left_pad, sample_group

CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)


@dataclasses.dataclass
class ToolEnvironment:
    """Named Python tools the policy may call, at most ``max_turns`` assistant turns per trajectory."""

    tools: dict[str, Callable[..., Any]]
    max_turns: int = 4

    @classmethod
    def of(cls, *functions: Callable[..., Any], max_turns: int = 4) -> ToolEnvironment:
        return cls({f.__name__: f for f in functions}, max_turns)

    def respond(self, assistant_text: str) -> tuple[str | None, int]:
        """The tool message for one assistant turn (None when it calls no tool) and the call count.

        A malformed call or a failing tool is answered with an error message the model can read;
        it does not stop the rollout (it is the model's mistake, not the trainer's).
        """
        calls = CALL.findall(assistant_text)
        if not calls:
            return None, 0
        return "\n".join(f"<tool_response>{self._run(call)}</tool_response>" for call in calls), len(calls)

    def _run(self, raw: str) -> str:
        try:
            call = json.loads(raw)
            name, arguments = call["name"], call.get("arguments", {})
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            return f"error: malformed tool call ({type(err).__name__}: {err})"
        if name not in self.tools:
            return f"error: unknown tool {name!r}; available: {sorted(self.tools)}"
        try:
            return str(self.tools[name](**arguments))
        except Exception as err:  # a tool failure is reported to the model, as a real environment would
            return f"error: {type(err).__name__}: {err}"


@dataclasses.dataclass
class TurnRollout(Rollout):
    """A :class:`Rollout` whose completions span several turns.

    token_turn: ``[N, Lc]`` the assistant turn each completion token belongs to, -1 for tool tokens
        and padding (``completion_mask`` is ``token_turn >= 0``); attention ``[N, Lc]`` marks
        every real token, tool tokens included.
    turns: the assistant texts of each trajectory; tool_calls ``[N]`` calls the model made (HDPO's T),
        including calls in a last turn that no tool answers.
    """

    token_turn: Tensor = None
    turns: list[list[str]] = None
    tool_calls: Tensor = None
    attention: Tensor = None

    @property
    def completion_attention(self) -> Tensor:
        return self.attention

    def subset(self, rows: Tensor) -> TurnRollout:
        base = super().subset(rows)
        picked = rows.tolist()
        return dataclasses.replace(
            base,
            token_turn=self.token_turn[rows],
            turns=[self.turns[i] for i in picked],
            tool_calls=self.tool_calls[rows],
            attention=self.attention[rows],
        )


def sample_with_tools(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    group_size: int,
    env: ToolEnvironment,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> TurnRollout:
    """``group_size`` multi-turn trajectories per prompt; ``max_new_tokens`` limits each turn."""
    conversations = [_messages(p) for p in prompts for _ in range(group_size)]
    prompt_ids = [ids for ids in encode_prompts(tokenizer, prompts) for _ in range(group_size)]
    tokens: list[list[int]] = [[] for _ in conversations]
    turn_of: list[list[int]] = [[] for _ in conversations]
    turns: list[list[str]] = [[] for _ in conversations]
    calls = [0] * len(conversations)
    active = list(range(len(conversations)))
    for turn in range(env.max_turns):
        sampled = sample_group(
            model, tokenizer, [prompt_ids[i] + tokens[i] for i in active], 1, max_new_tokens, temperature, top_p, generator
        )
        still = []
        for row, i in enumerate(active):
            new = sampled.completion_ids[row][sampled.completion_mask[row]].tolist()
            tokens[i] += new
            turn_of[i] += [turn] * len(new)
            turns[i].append(sampled.texts[row])
            conversations[i].append({"role": "assistant", "content": sampled.texts[row]})
            calls[i] += len(CALL.findall(sampled.texts[row]))
            reply = env.respond(sampled.texts[row])[0] if turn < env.max_turns - 1 else None  # no turn left to read it
            if reply is not None:
                segment = _tool_segment(tokenizer, conversations[i], reply)
                tokens[i] += segment
                turn_of[i] += [-1] * len(segment)
                conversations[i].append({"role": "tool", "content": reply})
                still.append(i)
        active = still
        if not active:
            break
    return _assemble(tokenizer, prompt_ids, tokens, turn_of, turns, calls, group_size)


def _messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def _tool_segment(tokenizer, conversation: list[dict], reply: str) -> list[int]:
    """Template tokens between the end of the last assistant message and the next assistant turn.

    Rendered as text and cut right after the assistant's end-of-turn token, so the sampled tokens
    stay as they were; assumes the template closes assistant messages with the EOS token.
    """
    before = tokenizer.apply_chat_template(conversation, tokenize=False)
    after = tokenizer.apply_chat_template(
        [*conversation, {"role": "tool", "content": reply}], tokenize=False, add_generation_prompt=True
    )
    eos = tokenizer.eos_token
    cut = before.rfind(eos)
    if cut < 0 or not after.startswith(before[: cut + len(eos)]):
        raise ValueError(
            "multi-turn rollouts need a chat template that ends assistant messages with the EOS token "
            f"({eos!r}) and renders conversations prefix-stably"
        )
    return tokenizer(after[cut + len(eos) :], add_special_tokens=False)["input_ids"]


def _assemble(tokenizer, prompt_ids, tokens, turn_of, turns, calls, group_size) -> TurnRollout:
    width = max(len(t) for t in tokens)
    pad = tokenizer.pad_token_id
    completion = torch.full((len(tokens), width), pad, dtype=torch.long)
    token_turn = torch.full((len(tokens), width), -1, dtype=torch.long)
    attention = torch.zeros((len(tokens), width), dtype=torch.bool)
    for row, (ids, owner) in enumerate(zip(tokens, turn_of, strict=True)):
        completion[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        token_turn[row, : len(owner)] = torch.tensor(owner, dtype=torch.long)
        attention[row, : len(ids)] = True
    prompt_rows, prompt_mask = left_pad(prompt_ids, pad)
    return TurnRollout(
        prompt_ids=prompt_rows,
        prompt_mask=prompt_mask,
        completion_ids=completion,
        completion_mask=token_turn >= 0,
        texts=["\n".join(t) for t in turns],
        group_size=group_size,
        token_turn=token_turn,
        turns=turns,
        tool_calls=torch.tensor(calls, dtype=torch.long),
        attention=attention,
    )


def turn_advantages_to_tokens(advantages: Tensor, token_turn: Tensor) -> Tensor:
    """Per-turn advantages ``[N, T]`` -> per-token ``[N, Lc]`` (0 on tool tokens and padding)."""
    index = token_turn.clamp_min(0).clamp_max(advantages.shape[1] - 1)
    return torch.where(token_turn >= 0, advantages.gather(1, index), torch.zeros((), dtype=advantages.dtype))
