"""tinyinfer.nn is tinyinfer.convert.nn (the PyTorch front end), kept importable
under this name: `import tinyinfer.nn as nn` gives that same module."""

import sys

from .convert import nn as _nn

sys.modules[__name__] = _nn
