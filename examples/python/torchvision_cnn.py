"""Rebuilds a torchvision-style ResNet (BasicBlock: the keys of resnet18 / resnet34,
any widths and depths) from a plain state_dict file, without torch, and writes a .tinf.

    python examples/python/torchvision_cnn.py resnet.pt resnet.tinf [H W]

The layer sizes are read from the weights; the graph takes NCHW float32 images
(any batch size) and gives the logits, as torchvision's model does."""
import sys

from tinyinfer.convert import nn
from tinyinfer.convert.torch_weights import load_state_dict


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, sd):
        super().__init__()
        c = sd["conv1.weight"].shape[0]
        self.conv1, self.bn1 = nn.Conv2d(sd["conv1.weight"].shape[1], c, 7, 2, 3, bias=False), nn.BatchNorm2d(c)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        self.stages = [f"layer{i}" for i in range(1, 5) if f"layer{i}.0.conv1.weight" in sd]
        for i, name in enumerate(self.stages):
            n = len({k.split(".")[1] for k in sd if k.startswith(name + ".")})
            cout = sd[f"{name}.0.conv1.weight"].shape[0]
            setattr(self, name, nn.Sequential(*[BasicBlock(c if j == 0 else cout, cout, 2 if i and not j else 1)
                                                for j in range(n)]))
            c = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, sd["fc.weight"].shape[0])

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        x = self.avgpool(x)
        return self.fc(x.view(x.size(0), -1))


if __name__ == "__main__":
    sd = load_state_dict(sys.argv[1])
    net = ResNet(sd)
    net.load_state_dict(sd)
    h, w = (int(v) for v in sys.argv[3:5]) if len(sys.argv) > 4 else (224, 224)
    print(f"wrote {sys.argv[2]}: {net.save(sys.argv[2], input_shape=(1, 3, h, w))} bytes")
