"""A pre-norm transformer encoder block written with plain layers (so its
ONNX export is LayerNormalization, MatMul, Softmax, Gelu, Reshape, Transpose)."""

import math

import torch
from torch import nn


class EncoderBlock(nn.Module):
    def __init__(self, d_model=128, heads=4, ff=256):
        super().__init__()
        self.heads, self.d = heads, d_model // heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, ff)
        self.ff2 = nn.Linear(ff, d_model)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q = q.reshape(b, t, self.heads, self.d).transpose(1, 2)
        k = k.reshape(b, t, self.heads, self.d).transpose(1, 2)
        v = v.reshape(b, t, self.heads, self.d).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.ff2(nn.functional.gelu(self.ff1(self.ln2(x))))
