"""The builder (tinyinfer.convert.nn) for real checkpoints, against torch running
the same modules: asymmetric padding (ZeroPad2d, functional.pad before a
strided conv, as TF-SAME checkpoints do), Value @ Value, scaled-dot-product
attention with a float mask, clamp / maximum / minimum / sum, a batch that
stays dynamic through view(x.size(0), -1), checkpoint modules skipped."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import tinyinfer  # noqa: E402
from tinyinfer.convert import nn  # noqa: E402

from conftest import assert_close  # noqa: E402


class TorchPadNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = torch.nn.ZeroPad2d((1, 2, 0, 1))
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.conv2 = torch.nn.Conv2d(4, 5, 3, stride=2)

    def forward(self, x):
        x = torch.relu(self.conv(self.pad(x)))
        return self.conv2(F.pad(x, (0, 1, 0, 1)))  # TF-SAME on stride 2


class PadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2)

    def forward(self, x):
        x = nn.functional.relu(self.conv(self.pad(x)))
        return self.conv2(nn.functional.pad(x, (0, 1, 0, 1)))


def _build(net, tnet, shape):
    torch.manual_seed(0)
    tnet = tnet.eval()
    net.load_state_dict(tnet.state_dict())
    return net.to_builder(shape).load(), tnet


def test_asymmetric_padding_matches_torch():
    m, tnet = _build(PadNet(), TorchPadNet(), (1, 3, 15, 13))
    with m:
        x = torch.randn(1, 3, 15, 13)
        assert_close(m.run(x.numpy())[0], tnet(x).detach().numpy())


class TorchHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6 * 4 * 4, 3)
        self.pooler = torch.nn.Linear(3, 3)  # in the checkpoint, unused by forward

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(x.view(x.size(0), -1))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv(x)), 2)
        return self.fc(x.view(x.size(0), -1))


def test_dynamic_batch_through_view_and_skipped_modules():
    torch.manual_seed(0)
    tnet = TorchHead().eval()
    net = Head()
    with pytest.raises(nn.StateDictError, match="pooler"):
        net.load_state_dict(tnet.state_dict())
    net.load_state_dict(tnet.state_dict(), skip=("pooler",))
    with net.to_builder((1, 3, 8, 8)).load() as m:
        for batch in (1, 5):
            x = torch.randn(batch, 3, 8, 8)
            assert_close(m.run(x.numpy())[0], tnet(x).detach().numpy())


class TorchAttn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(16, 16) for _ in range(3))

    def forward(self, x, mask):
        b, s, e = x.shape
        q, k, v = (l(x).view(b, s, 2, 8).transpose(1, 2) for l in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = (q @ k.transpose(-1, -2)).sum(-1)
        return a.transpose(1, 2).reshape(b, s, e).clamp(-0.5, 0.5), torch.maximum(scores, torch.minimum(
            scores, torch.zeros(())))


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x, mask):
        b, s, e = x.shape
        q, k, v = (l(x).view(b, s, 2, 8).transpose(1, 2) for l in (self.q, self.k, self.v))
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = (q @ k.transpose(-1, -2)).sum(-1)
        return a.transpose(1, 2).reshape(b, s, e).clamp(-0.5, 0.5), nn.maximum(scores, nn.minimum(scores, 0.0))


def test_attention_matmul_clamp_sum_match_torch():
    torch.manual_seed(0)
    tnet = TorchAttn().eval()
    net = Attn()
    net.load_state_dict(tnet.state_dict())
    x = torch.randn(2, 5, 16)
    mask = torch.zeros(2, 1, 1, 5)
    mask[1, ..., 3:] = -1e4  # padding of the second sequence, as a float additive mask
    with net.to_builder([(2, 5, 16), (2, 1, 1, 5)]).load() as m:
        ys = m.run([x.numpy(), mask.numpy()])
    refs = tnet(x, mask)
    for y, r in zip(ys, refs):
        assert_close(y, r.detach().numpy())


def test_boolean_mask_is_refused():
    q = nn._Tracer(nn.Module()).input("q", (1, 2, 3, 4), "float32")
    with pytest.raises(tinyinfer.UnsupportedOpError, match="boolean mask"):
        nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((1, 1, 3, 3), bool))
