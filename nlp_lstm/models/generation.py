"""Sampling text from a language model: temperature, top-k and nucleus (top-p)."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor


def filter_logits(logits: Tensor, top_k: Optional[int] = None, top_p: Optional[float] = None) -> Tensor:
    """Set to -inf the logits outside the top-k and outside the smallest set whose
    probability mass reaches top-p (always keeping the most likely token)."""
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model,
    prompt_ids: Sequence[int],
    max_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    start_id: Optional[int] = None,
) -> List[int]:
    """Continue `prompt_ids` by `max_tokens` tokens with the forward direction.

    The model reads `start_id` (the end-of-line token: a line's start) before the prompt,
    exactly as it saw every line start in training. temperature=0 is greedy decoding.
    """
    was_training = model.training
    model.eval()
    device = model.embedding.weight.device
    context = ([start_id] if start_id is not None else []) + list(prompt_ids)
    if not context:
        raise ValueError("generation needs a prompt or a start token")
    state = model.initial_state(1, device)[0]
    features, state = model(torch.tensor([context], device=device), state, 0)
    generated: List[int] = []
    for _ in range(max_tokens):
        logits = model.logits(features[:, -1]).float()
        if temperature == 0:
            next_id = int(logits.argmax(-1))
        else:
            logits = filter_logits(logits / temperature, top_k, top_p)
            # Sample on the CPU so a seeded CPU generator gives the same text on any device.
            next_id = int(torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=generator))
        generated.append(next_id)
        features, state = model(torch.tensor([[next_id]], device=device), state, 0)
    model.train(was_training)
    return generated
