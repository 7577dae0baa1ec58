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


# ---------------------------------------------------------------------------------------------
# examples/python: a torchvision-style ResNet and a BERT encoder from plain state_dict files
# ---------------------------------------------------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_example(name, *args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", name), *map(str, args)], check=True,
                   env=env, timeout=300, stdout=subprocess.DEVNULL)


class TBlock(torch.nn.Module):  # torchvision's BasicBlock
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              torch.nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TResNet(torch.nn.Module):  # torchvision's ResNet layout, small widths
    def __init__(self, widths=(8, 16, 32, 64), blocks=(2, 1, 1, 2), classes=7):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(widths[0])
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            setattr(self, f"layer{i + 1}", torch.nn.Sequential(
                *[TBlock(c if j == 0 else w, w, 2 if i and not j else 1) for j in range(n)]))
            c = w
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(c, classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_example_torchvision_resnet(tmp_path):
    torch.manual_seed(0)
    net = TResNet().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), tmp_path / "resnet.pt")
    _run_example("torchvision_cnn.py", tmp_path / "resnet.pt", tmp_path / "resnet.tinf", 64, 64)
    with tinyinfer.load(str(tmp_path / "resnet.tinf")) as m:
        for batch in (1, 3):
            x = torch.randn(batch, 3, 64, 64)
            with torch.no_grad():
                ref = net(x).numpy()
            assert_close(m.run(x.numpy())[0], ref, rtol=1e-4, atol=1e-5)


def test_example_bert_encoder(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=16)
    bert = transformers.BertModel(cfg).eval()
    torch.save(bert.state_dict(), tmp_path / "bert.pt")
    _run_example("bert_encoder.py", tmp_path / "bert.pt", tmp_path / "bert.tinf", 4, 8)
    ids = torch.randint(0, 50, (1, 8))
    mask = torch.ones(1, 8)
    mask[0, 6:] = 0
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state.numpy()
    with tinyinfer.load(str(tmp_path / "bert.tinf")) as m:
        y = m.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert_close(y, ref, rtol=1e-4, atol=1e-5)


def test_casts_float_is_a_no_op_and_others_are_cast_ops():
    t = nn._Tracer(nn.Module())
    x, ids = t.input("x", (1, 3), "float32"), t.input("ids", (1, 3), "int64")
    assert x.float() is x and x.to(torch.float32) is x
    y = ids.float()
    assert y.dtype == np.float32 and y.sym.producer.op == "Cast" and y.shape == (1, 3)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="Cast takes"):
        x.to(torch.float16)
