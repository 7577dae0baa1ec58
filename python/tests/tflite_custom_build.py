"""A one-op .tflite with a CUSTOM op, written with the `tflite` package's
flatbuffer builders: for the converter's custom-op tests
(test_convert_gaps.py, test_tflite_max_unpooling.py)."""

import numpy as np


def custom_op_model(code: str, tensors, n_inputs: int, options: bytes) -> bytes:
    """CUSTOM `code` with raw custom_options `options`. tensors: (name,
    shape, data or None) for the op's inputs then its outputs; the first
    `n_inputs` are the op's inputs, the rest its outputs. Inputs without
    data are the graph's inputs, every output a graph output; float32."""
    import flatbuffers
    import tflite as tfl
    b = flatbuffers.Builder(1024)
    datas = [d for _, _, d in tensors if d is not None]
    buf_offs = []
    for d in [None] + datas:
        vec = None if d is None else b.CreateByteVector(np.ascontiguousarray(d, np.float32).tobytes())
        tfl.BufferStart(b)
        if vec is not None:
            tfl.BufferAddData(b, vec)
        buf_offs.append(tfl.BufferEnd(b))
    t_offs, k = [], 0
    for name, shape, d in tensors:
        nm, shp = b.CreateString(name), b.CreateNumpyVector(np.asarray(shape, np.int32))
        tfl.TensorStart(b)
        tfl.TensorAddShape(b, shp)
        tfl.TensorAddType(b, 0)
        if d is not None:
            k += 1
            tfl.TensorAddBuffer(b, k)
        tfl.TensorAddName(b, nm)
        t_offs.append(tfl.TensorEnd(b))
    cc = b.CreateString(code)
    tfl.OperatorCodeStart(b)
    tfl.OperatorCodeAddDeprecatedBuiltinCode(b, 32)
    tfl.OperatorCodeAddBuiltinCode(b, 32)
    tfl.OperatorCodeAddCustomCode(b, cc)
    tfl.OperatorCodeAddVersion(b, 1)
    opcode = tfl.OperatorCodeEnd(b)
    opts = b.CreateByteVector(options)
    op_in = np.int32(range(n_inputs))
    op_out = np.int32(range(n_inputs, len(tensors)))
    graph_in = np.int32([i for i in range(n_inputs) if tensors[i][2] is None])
    iv, ov = b.CreateNumpyVector(op_in), b.CreateNumpyVector(op_out)
    tfl.OperatorStart(b)
    tfl.OperatorAddOpcodeIndex(b, 0)
    tfl.OperatorAddInputs(b, iv)
    tfl.OperatorAddOutputs(b, ov)
    tfl.OperatorAddCustomOptions(b, opts)
    op = tfl.OperatorEnd(b)

    def vec(start, items):
        start(b, len(items))
        for o in reversed(items):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()
    tv, opv = vec(tfl.SubGraphStartTensorsVector, t_offs), vec(tfl.SubGraphStartOperatorsVector, [op])
    giv, gov = b.CreateNumpyVector(graph_in), b.CreateNumpyVector(op_out)
    tfl.SubGraphStart(b)
    tfl.SubGraphAddTensors(b, tv)
    tfl.SubGraphAddInputs(b, giv)
    tfl.SubGraphAddOutputs(b, gov)
    tfl.SubGraphAddOperators(b, opv)
    sg = tfl.SubGraphEnd(b)
    sgv, cv = vec(tfl.ModelStartSubgraphsVector, [sg]), vec(tfl.ModelStartOperatorCodesVector, [opcode])
    bv = vec(tfl.ModelStartBuffersVector, buf_offs)
    tfl.ModelStart(b)
    tfl.ModelAddVersion(b, 3)
    tfl.ModelAddOperatorCodes(b, cv)
    tfl.ModelAddSubgraphs(b, sgv)
    tfl.ModelAddBuffers(b, bv)
    b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
