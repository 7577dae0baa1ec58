"""BertModel's encoder from a plain state_dict, without torch: bert_encoder.py bert.pt bert.tinf HEADS [SEQ].
Inputs input_ids int64 [1, SEQ], attention_mask float32 (1 token, 0 padding); output: the last hidden state."""
import sys
import numpy as np
from tinyinfer.convert import nn
from tinyinfer.convert.torch_weights import load_state_dict


class Sub(nn.Module):  # a named group of modules, as the checkpoint nests them
    def __init__(this, **mods):
        super().__init__()
        for k, m in mods.items():
            setattr(this, k, m)


class Layer(nn.Module):
    def __init__(self, h, inter, heads):
        super().__init__()
        def dense_norm(i, o):
            return Sub(dense=nn.Linear(i, o), LayerNorm=nn.LayerNorm(o, eps=1e-12))
        self.heads, self.attention = heads, Sub(
            self=Sub(query=nn.Linear(h, h), key=nn.Linear(h, h), value=nn.Linear(h, h)), output=dense_norm(h, h))
        self.intermediate, self.output = Sub(dense=nn.Linear(h, inter)), dense_norm(inter, h)

    def forward(self, x, mask):
        (b, s, h), a = x.shape, self.attention
        q, k, v = (lin(x).view(b, s, self.heads, h // self.heads).transpose(1, 2)
                   for lin in (a.self.query, a.self.key, a.self.value))
        ctx = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
        x = a.output.LayerNorm(a.output.dense(ctx.reshape(b, s, h)) + x)
        y = self.output.dense(nn.functional.gelu(self.intermediate.dense(x)))
        return self.output.LayerNorm(y + x)


class Bert(nn.Module):
    def __init__(self, sd, heads):
        super().__init__()
        h = sd["embeddings.word_embeddings.weight"].shape[1]
        self.embeddings = Sub(LayerNorm=nn.LayerNorm(h, eps=1e-12), **{f"{n}_embeddings": nn.Embedding(
            *sd[f"embeddings.{n}_embeddings.weight"].shape) for n in ("word", "position", "token_type")})
        n, inter = len({k.split(".")[2] for k in sd if k.startswith("encoder.")}), \
            sd["encoder.layer.0.intermediate.dense.weight"].shape[0]
        self.encoder = Sub(layer=nn.ModuleList([Layer(h, inter, heads) for _ in range(n)]))

    def forward(self, ids, mask):
        e, s = self.embeddings, ids.shape[1]
        x = e.LayerNorm(e.word_embeddings(ids) + e.position_embeddings.weight.data[:s]
                        + e.token_type_embeddings.weight.data[0])
        m = (1.0 - mask.view(mask.shape[0], 1, 1, s)) * float(np.finfo(np.float32).min)  # a float additive mask
        for layer in self.encoder.layer:
            x = layer(x, m)
        return x


if __name__ == "__main__":
    sd = load_state_dict(sys.argv[1])
    (net := Bert(sd, int(sys.argv[3]))).load_state_dict(sd, skip=("pooler", "embeddings.position_ids"))
    net.save(sys.argv[2], input_shape=[(1, int(sys.argv[4]) if len(sys.argv) > 4 else 128)] * 2,
             input_dtype=["int64", "float32"], input_names=["input_ids", "attention_mask"])
