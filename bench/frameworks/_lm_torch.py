"""The transformer workload's model in PyTorch: ``nn.TransformerEncoderLayer`` with a causal mask.

PyTorch's own block (``norm_first=True``, ``activation="gelu"`` (exact),
``dropout=0``, ``batch_first=True``) run with a causal ``src_mask`` and
``is_causal=True``, which is how PyTorch builds a decoder-only model; the
learned positions are an ``nn.Parameter``, the output is tied to the token
embedding (``h @ embed.weight.T``). PyTorch's inits differ, so the weights
are Xavier(Glorot)-uniform (``in_proj_weight`` per query, key and value
slice, as three ``[features, features]`` projections), biases zero, tables
``normal(0.02)``. The model is :class:`bench.spec.TransformerLM`.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.spec import TransformerLM


class LM(nn.Module):
    def __init__(self, spec: TransformerLM):
        super().__init__()
        d = spec.features
        self.embed = nn.Embedding(spec.vocab, d)
        self.positions = nn.Parameter(torch.empty(spec.length, d))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d,
                spec.heads,
                dim_feedforward=4 * d,
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=1e-5,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(spec.depth)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-5)
        self.register_buffer(
            "causal", nn.Transformer.generate_square_subsequent_mask(spec.length), persistent=False
        )
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.positions, std=0.02)
        for block in self.blocks:
            attention = block.self_attn
            for weight in attention.in_proj_weight.data.chunk(3):  # query, key, value
                nn.init.xavier_uniform_(weight)
            nn.init.zeros_(attention.in_proj_bias)
            for linear in (attention.out_proj, block.linear1, block.linear2):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.zeros_(linear.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        h = self.embed(tokens) + self.positions[:t]
        mask = self.causal[:t, :t]
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.final_norm(h) @ self.embed.weight.T
