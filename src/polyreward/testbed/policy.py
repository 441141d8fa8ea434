"""A tiny autoregressive policy (embedding -> GRU -> linear) and grouped sampling with environment tokens.

Shapes: ``N`` samples, ``P`` prompt tokens, ``L`` completion tokens, ``V`` vocabulary size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polyreward.testbed.tasks import Completion, Prompt, Task
from polyreward.testbed.vocab import PAD, SEP, VOCAB_SIZE


class GRUPolicy(nn.Module):
    """``logits[B, S, V] = head(GRU(embed(tokens[B, S])))``; tokens outside ``actions`` get ``-inf``.

    The same module scores a whole sequence at once (training) and one token at a time with a
    carried hidden state (sampling), so the two give the same log-probabilities.
    """

    def __init__(self, actions: Sequence[int], hidden: int = 64, embed: int = 32, vocab_size: int = VOCAB_SIZE):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        allowed[list(actions)] = True
        self.register_buffer("allowed", allowed, persistent=False)

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``tokens[B, S]`` -> ``(logits[B, S, V], state[1, B, H])``."""
        out, state = self.gru(self.embed(tokens), state)
        logits = self.head(out).masked_fill(~self.allowed, float("-inf"))
        return logits, state


@dataclasses.dataclass
class Rollout:
    """Sampled sequences of one step.

    tokens: ``[N, P + L]`` prompt then completion, PAD after the end.
    policy_mask: ``[N, P + L]`` True where the policy chose the token (not prompt, injected or padding).
    old_logprobs: ``[N, P + L]`` log-probability of each policy token at sampling time, 0 elsewhere.
    token_turn: ``[N, P + L]`` the turn each policy token belongs to (multi-turn), -1 elsewhere.
    prompts / completions: the per-sample :class:`Prompt` and :class:`Completion` objects.
    """

    tokens: Tensor
    policy_mask: Tensor
    old_logprobs: Tensor
    token_turn: Tensor
    prompts: list[Prompt]
    completions: list[Completion]


@torch.no_grad()
def sample(
    policy: GRUPolicy, task: Task, prompts: Sequence[Prompt], generator: torch.Generator, temperature: float = 1.0
) -> Rollout:
    """Sample one completion per entry of ``prompts`` (already expanded to ``N`` samples).

    At each step the policy samples from its allowed tokens at ``temperature`` (logits divided by it;
    0 is greedy); ``old_logprobs`` are those of the distribution sampled from (at temperature 1 when
    greedy). The task's environment
    may inject the next token instead (a tool result, the next turn's observation), which the
    policy reads but is not trained on. A row stops at its END (or last SEP) or after
    ``task.max_new_tokens`` completion tokens.
    """
    n, length = len(prompts), task.max_new_tokens
    prompt_tokens = torch.tensor([p.tokens for p in prompts])
    env = task.env(prompts)
    tokens = torch.full((n, length), PAD, dtype=torch.long)
    policy_mask = torch.zeros(n, length, dtype=torch.bool)
    logprobs = torch.zeros(n, length)
    logits, state = policy(prompt_tokens)
    logits = logits[:, -1]
    inject = torch.full((n,), -1, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for t in range(length):
        logp = torch.log_softmax(logits, -1)
        if temperature == 0:
            sampled = logits.argmax(-1)
        elif temperature == 1.0:  # the exact temperature-1 path, draw for draw
            sampled = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
        else:
            logp = torch.log_softmax(logits / temperature, -1)
            sampled = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
        forced = inject >= 0
        token = torch.where(forced, inject, sampled)
        active = ~done
        tokens[:, t] = torch.where(active, token, PAD)
        chosen = active & ~forced
        policy_mask[:, t] = chosen
        logprobs[:, t] = torch.where(chosen, logp.gather(1, sampled[:, None]).squeeze(1), 0.0)
        inject, finished = env.step(torch.where(chosen, token, PAD))
        done = done | (chosen & finished)
        if bool(done.all()):
            break
        out, state = policy(tokens[:, t : t + 1], state)
        logits = out[:, 0]
    return _rollout(prompt_tokens, tokens, policy_mask, logprobs, done, prompts)


def _rollout(prompt_tokens: Tensor, tokens: Tensor, policy_mask: Tensor, logprobs: Tensor, done: Tensor, prompts) -> Rollout:
    n, p = prompt_tokens.shape
    completions = []
    for row, policy, ended in zip(tokens.tolist(), policy_mask.tolist(), done.tolist(), strict=True):
        kept = [(t, not m) for t, m in zip(row, policy, strict=True) if t != PAD]
        completions.append(Completion(tokens=tuple(t for t, _ in kept), from_env=tuple(e for _, e in kept), ended=ended))
    # turn index of each policy token: the number of policy SEPs before it
    seps = (tokens == SEP) & policy_mask
    turn = torch.cumsum(seps.long(), 1) - seps.long()
    token_turn = torch.where(policy_mask, turn, -1)
    pad = torch.zeros(n, p, dtype=torch.bool)
    return Rollout(
        tokens=torch.cat([prompt_tokens, tokens], 1),
        policy_mask=torch.cat([pad, policy_mask], 1),
        old_logprobs=torch.cat([torch.zeros(n, p), logprobs], 1),
        token_turn=torch.cat([torch.full((n, p), -1), token_turn], 1),
        prompts=list(prompts),
        completions=completions,
    )


def sequence_logprobs(policy: GRUPolicy, rollout: Rollout) -> Tensor:
    """Log-probabilities ``[N, P + L]`` of the policy tokens under ``policy`` (0 elsewhere), with grad.

    Position 0 (BOS) is never a policy token, so the logits of positions ``0 .. S-2`` score tokens
    ``1 .. S-1``.
    """
    logits, _ = policy(rollout.tokens[:, :-1])
    mask = rollout.policy_mask[:, 1:]
    target = torch.where(mask, rollout.tokens[:, 1:], 0)
    logits = torch.where(mask[..., None], logits, torch.zeros_like(logits))  # keep -inf out of masked rows
    picked = logits.gather(-1, target[..., None]).squeeze(-1) - torch.logsumexp(logits, -1)
    picked = torch.where(mask, picked, torch.zeros_like(picked))
    return torch.cat([torch.zeros_like(picked[:, :1]), picked], 1)
