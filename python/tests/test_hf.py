"""tinyinfer.from_torch on Hugging Face transformers encoders (random-initialised from a config: nothing is
downloaded), with attention masks as run-time inputs, compared against the same module run in torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")

import tinyinfer  # noqa: E402

VOCAB, SEQ = 100, 7


def _bert(attn):
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64, attn_implementation=attn)
    return transformers.BertModel(cfg).eval()


def _distilbert(attn):
    cfg = transformers.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                        max_position_embeddings=64, attn_implementation=attn)
    return transformers.DistilBertModel(cfg).eval()


def _masks():
    """Padding masks of a batch of 2: the second row pads from position 4, then from position 2."""
    a = np.ones((2, SEQ), np.int64)
    a[1, 4:] = 0
    b = np.ones((2, SEQ), np.int64)
    b[1, 2:] = 0
    b[0, 6:] = 0
    return a, b


@pytest.mark.parametrize("via", ["onnx", "torchscript"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("make", [_bert, _distilbert], ids=["BertModel", "DistilBertModel"])
def test_hf_encoder_with_attention_mask(make, attn, via):
    torch.manual_seed(0)
    model = make(attn)
    ids = torch.randint(0, VOCAB, (2, SEQ))
    mask_a, mask_b = _masks()
    m = tinyinfer.from_torch(model, (ids, torch.from_numpy(mask_a)), via=via)
    assert m.report.notes[0].startswith("exported from a live")
    assert ("torch.onnx.export" in m.report.notes[0]) == (via == "onnx")
    # The mask is a run-time input: a second mask (not the example's) gives torch's output for that mask.
    for mask in (mask_a, mask_b):
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=torch.from_numpy(mask))
        ref = [ref[0].numpy()] + ([ref[1].numpy()] if len(ref) > 1 and ref[1] is not None else [])
        out = m.run([ids.numpy(), mask])
        assert len(out) == len(ref)
        for o, r in zip(out, ref):
            assert o.shape == r.shape
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5)
    # Padded positions change nothing at the kept positions (the mask really masks).
    other = ids.clone()
    other[1, 4:] = (other[1, 4:] + 1) % VOCAB
    y0 = m.run([ids.numpy(), mask_a])[0]
    y1 = m.run([other.numpy(), mask_a])[0]
    np.testing.assert_allclose(y0[1, :4], y1[1, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(y0[1, 4:], y1[1, 4:])
    m.close()


@pytest.mark.parametrize("make", [_bert, _distilbert], ids=["BertModel", "DistilBertModel"])
def test_hf_encoder_quantize_dynamic_keeps_int8(make):
    """quantize_dynamic'd encoders take the TorchScript path and keep torch's int8 weights: the result is as
    close to torch's quantized model as torch's quantized model is to the float one."""
    torch.manual_seed(0)
    model = make("eager")
    q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    ids = torch.randint(0, VOCAB, (2, SEQ))
    mask = _masks()[0]
    m = tinyinfer.from_torch(q, (ids, torch.from_numpy(mask)))
    assert m.metadata["quantization"] == "int8-dynamic"
    assert "torch.jit.trace" in m.report.notes[0]
    with torch.no_grad():
        ref_q = q(input_ids=ids, attention_mask=torch.from_numpy(mask))[0].numpy()
        ref_f = model(input_ids=ids, attention_mask=torch.from_numpy(mask))[0].numpy()
    y = m.run([ids.numpy(), mask])[0]
    torch_err = np.abs(ref_q - ref_f).max()
    assert 0 < torch_err < 0.05
    assert np.abs(y - ref_q).max() <= 2 * torch_err
    assert np.abs(y - ref_f).max() <= 2 * torch_err
    m.close()


class _MaskOps(torch.nn.Module):
    """The run-time mask ops HF encoders use, in one scripted module."""

    def forward(self, x, mask):
        keep = mask.to(torch.bool) & (torch.arange(x.size(1)) >= 1)[None, :]
        either = keep | mask.eq(0)
        idx_b = torch.arange(x.size(0))[:, None]
        idx_t = (x.size(1) - 1 - torch.arange(x.size(1)))[None, :]
        rev = x[idx_b, idx_t]
        big = keep[:, None, :].expand(x.size(0), 3, x.size(1))
        y = torch.where(big, rev[:, None, :], torch.zeros(1))
        z = rev.masked_fill(~either, -1.0) + (x > 0.5).float() + (x.lt(-0.5) ^ keep).to(torch.float32)
        return y, z, mask.to(torch.int32)


@pytest.mark.parametrize("script", [True, False], ids=["scripted", "traced"])
def test_torchscript_run_time_mask_ops(script):
    torch.manual_seed(0)
    x = torch.randn(3, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]])
    mod = _MaskOps().eval()
    if script:
        mod = torch.jit.script(mod)
    m = tinyinfer.from_torch(mod, (x, mask), via="torchscript")
    for xs in (x, torch.randn(3, 6)):
        with torch.no_grad():
            ref = mod(xs, mask)
        out = m.run([xs.numpy(), mask.numpy()])
        for o, r in zip(out, ref):
            assert o.dtype == r.numpy().dtype and o.shape == tuple(r.shape)
            np.testing.assert_array_equal(o, r.numpy())
    m.close()


class _RunTimeIndex(torch.nn.Module):
    def forward(self, x, idx):
        return x[torch.arange(x.size(0)), idx]


def test_torchscript_indexing_with_run_time_indices_is_refused_with_its_line():
    x, idx = torch.randn(2, 5), torch.tensor([1, 4])
    with pytest.raises(tinyinfer.UnsupportedOpError, match=r"run-time or omitted \(None\) index tensors, at code/"):
        tinyinfer.from_torch(_RunTimeIndex(), (x, idx), via="torchscript")
