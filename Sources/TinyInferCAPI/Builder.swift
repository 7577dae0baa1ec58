// The C API of the graph builder: assembles a GraphDef and serializes it
// with ModelFile.write, then validates the bytes by loading them.

import CTinyInfer
import TinyInferCore

@c @implementation
public func tinf_builder_create(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> tinf_status {
  guard let out else { return nullArg("tinf_builder_create") }
  out.pointee = retain(BuilderHandle())
  return ok()
}

@c @implementation
public func tinf_builder_free(_ builder: OpaquePointer?) {
  guard let builder else { return }
  Unmanaged<BuilderHandle>.fromOpaque(UnsafeRawPointer(builder)).release()
}

@c @implementation
public func tinf_builder_set_metadata(_ builder: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?)
  -> tinf_status
{
  guard let b = builderHandle(builder), let key, let value else { return nullArg("tinf_builder_set_metadata") }
  let k = String(cString: key)
  let v = String(cString: value)
  b.finished = false
  for i in b.def.metadata.indices where b.def.metadata[i].key == k {
    b.def.metadata[i].value = v
    return ok()
  }
  b.def.metadata.append((k, v))
  return ok()
}

@c @implementation
public func tinf_builder_add_tensor(
  _ builder: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ dtype: Int32, _ rank: Int32,
  _ dims: UnsafePointer<Int64>?, _ data: UnsafeRawPointer?, _ nbytes: Int, _ out: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  guard let b = builderHandle(builder), let name else { return nullArg("tinf_builder_add_tensor") }
  var dt: DType? = nil
  if dtype != 0 {
    guard let d = dtypeFrom(dtype) else { return fail(.unsupportedDType, "unknown dtype code \(dtype)") }
    dt = d
  }
  var shape: [Int]? = nil
  if rank >= 0 {
    guard rank <= 8 else { return fail(.invalidArgument, "rank \(rank) exceeds 8") }
    guard rank == 0 || dims != nil else { return nullArg("tinf_builder_add_tensor (dims)") }
    var s: [Int] = []
    for i in 0..<Int(rank) {
      let d = dims![i]
      // Int64(1) << 34: `1 << 34` in Int is 0 where Int has 32 bits (ARMv7); and Int(d) must fit Int.
      guard d >= 1 && d <= min(Int64(1) << 34, Int64(Int.max)) else {
        return fail(.invalidArgument, "dimension \(d) must be >= 1")
      }
      s.append(Int(d))
    }
    shape = s
  } else if rank != -1 {
    return fail(.invalidArgument, "rank must be -1 (unknown) or 0...8")
  }
  var constant: [UInt8]? = nil
  if let data {
    guard let dt, let shape else { return fail(.invalidArgument, "a constant needs a dtype and a shape") }
    var count = 1
    for d in shape {
      let (m, o) = count.multipliedReportingOverflow(by: d)
      guard !o else { return fail(.invalidArgument, "constant is too large") }
      count = m
    }
    let (expected, o) = count.multipliedReportingOverflow(by: dt.size)
    guard !o, expected == nbytes else {
      return fail(.invalidArgument, "constant '\(String(cString: name))' needs \(expected) bytes, got \(nbytes)")
    }
    constant = Array(UnsafeRawBufferPointer(start: data, count: nbytes))
  }
  b.finished = false
  b.def.tensors.append(TensorSpec(name: String(cString: name), dtype: dt, shape: shape))
  b.constants.append(constant)
  out?.pointee = Int32(b.def.tensors.count - 1)
  return ok()
}

@c @implementation
public func tinf_builder_set_quant(
  _ builder: OpaquePointer?, _ tensor: Int32, _ axis: Int32, _ count: Int32, _ scales: UnsafePointer<Float>?,
  _ zeroPoints: UnsafePointer<Int32>?
) -> tinf_status {
  guard let b = builderHandle(builder), let scales, let zeroPoints else { return nullArg("tinf_builder_set_quant") }
  guard tensor >= 0 && Int(tensor) < b.def.tensors.count else { return fail(.invalidArgument, "tensor \(tensor) out of range") }
  guard count >= 1 && count <= 1 << 20 else { return fail(.invalidArgument, "count must be >= 1") }
  guard axis >= -1 && axis < 8, axis >= 0 || count == 1 else {
    return fail(.invalidArgument, "axis must be -1 (per tensor, count 1) or a dimension")
  }
  var s: [Float] = []
  var z: [Int32] = []
  for i in 0..<Int(count) {
    guard scales[i].isFinite && scales[i] > 0 else { return fail(.invalidArgument, "scale \(scales[i]) must be finite and > 0") }
    s.append(scales[i])
    z.append(zeroPoints[i])
  }
  b.finished = false
  b.def.tensors[Int(tensor)].quant = Quantization(axis: axis < 0 ? nil : Int(axis), scales: s, zeroPoints: z)
  return ok()
}

@c @implementation
public func tinf_builder_add_op(
  _ builder: OpaquePointer?, _ op: Int32, _ nIn: Int32, _ inputs: UnsafePointer<Int32>?, _ nOut: Int32,
  _ outputs: UnsafePointer<Int32>?, _ out: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_add_op") }
  guard op > 0 && op <= 0xFFFF, let kind = OpKind(rawValue: UInt16(op)) else { return fail(.unsupportedOp, "unknown op id \(op)") }
  guard nIn >= 0 && nIn <= 1 << 16, nOut >= 1 && nOut <= 1 << 16 else {
    return fail(.invalidArgument, "bad input or output count")
  }
  guard nIn == 0 || inputs != nil, let outputs else { return nullArg("tinf_builder_add_op") }
  let n = b.def.tensors.count
  var ins: [Int] = []
  for i in 0..<Int(nIn) {
    let t = Int(inputs![i])
    guard t >= -1 && t < n else { return fail(.invalidArgument, "input tensor \(t) out of range") }
    ins.append(t)
  }
  var outs: [Int] = []
  for i in 0..<Int(nOut) {
    let t = Int(outputs[i])
    guard t >= 0 && t < n else { return fail(.invalidArgument, "output tensor \(t) out of range") }
    outs.append(t)
  }
  b.finished = false
  b.def.nodes.append(Node(op: kind, inputs: ins, outputs: outs))
  out?.pointee = Int32(b.def.nodes.count - 1)
  return ok()
}

private func setAttr(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: AttrValue) -> tinf_status {
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_attr") }
  guard opIndex >= 0 && Int(opIndex) < b.def.nodes.count else { return fail(.invalidArgument, "op \(opIndex) out of range") }
  guard key > 0 && key <= 0xFFFF, let k = AttrKey(rawValue: UInt16(key)) else {
    return fail(.invalidArgument, "unknown attribute key \(key)")
  }
  b.finished = false
  b.def.nodes[Int(opIndex)].attrs[k] = value
  return ok()
}

@c @implementation
public func tinf_builder_set_attr_int(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: Int64) -> tinf_status {
  setAttr(builder, opIndex, key, .int(value))
}

@c @implementation
public func tinf_builder_set_attr_float(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: Float) -> tinf_status {
  setAttr(builder, opIndex, key, .float(value))
}

@c @implementation
public func tinf_builder_set_attr_ints(
  _ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ count: Int32, _ values: UnsafePointer<Int64>?
) -> tinf_status {
  guard count >= 0 && count <= 1 << 20, count == 0 || values != nil else { return nullArg("tinf_builder_set_attr_ints") }
  var xs: [Int64] = []
  for i in 0..<Int(count) { xs.append(values![i]) }
  return setAttr(builder, opIndex, key, .ints(xs))
}

@c @implementation
public func tinf_builder_set_attr_floats(
  _ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ count: Int32, _ values: UnsafePointer<Float>?
) -> tinf_status {
  guard count >= 0 && count <= 1 << 20, count == 0 || values != nil else { return nullArg("tinf_builder_set_attr_floats") }
  var xs: [Float] = []
  for i in 0..<Int(count) { xs.append(values![i]) }
  return setAttr(builder, opIndex, key, .floats(xs))
}

@c @implementation
public func tinf_builder_set_attr_string(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: UnsafePointer<CChar>?)
  -> tinf_status
{
  guard let value else { return nullArg("tinf_builder_set_attr_string") }
  return setAttr(builder, opIndex, key, .string(String(cString: value)))
}

private func tensorList(_ count: Int32, _ tensors: UnsafePointer<Int32>?, _ n: Int) -> [Int]? {
  guard count >= 0 && count <= 1 << 20, count == 0 || tensors != nil else { return nil }
  var xs: [Int] = []
  for i in 0..<Int(count) {
    let t = Int(tensors![i])
    guard t >= 0 && t < n else { return nil }
    xs.append(t)
  }
  return xs
}

@c @implementation
public func tinf_builder_set_graph_inputs(_ builder: OpaquePointer?, _ count: Int32, _ tensors: UnsafePointer<Int32>?)
  -> tinf_status
{
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_graph_inputs") }
  guard let xs = tensorList(count, tensors, b.def.tensors.count) else {
    return fail(.invalidArgument, "bad graph input list (NULL or index out of range)")
  }
  b.finished = false
  b.def.inputs = xs
  return ok()
}

@c @implementation
public func tinf_builder_set_graph_outputs(_ builder: OpaquePointer?, _ count: Int32, _ tensors: UnsafePointer<Int32>?)
  -> tinf_status
{
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_graph_outputs") }
  guard let xs = tensorList(count, tensors, b.def.tensors.count) else {
    return fail(.invalidArgument, "bad graph output list (NULL or index out of range)")
  }
  b.finished = false
  b.def.outputs = xs
  return ok()
}

@c @implementation
public func tinf_builder_finish(_ builder: OpaquePointer?) -> tinf_status {
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_finish") }
  b.setBytes(ModelFile.write(b.def, constants: b.constants))
  b.finished = false
  guard let data = b.data else { return fail(.internal, "empty serialization") }
  do throws(TinfError) {
    _ = try Model.load(buffer: UnsafeRawBufferPointer(start: data, count: b.count))
  } catch {
    return fail(error)
  }
  b.finished = true
  return ok()
}

@c @implementation
public func tinf_builder_data(
  _ builder: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?, _ nbytes: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let b = builderHandle(builder), let out, let nbytes else { return nullArg("tinf_builder_data") }
  guard b.finished else { return fail(.invalidState, "tinf_builder_finish has not succeeded since the last change") }
  out.pointee = UnsafeRawPointer(b.data)
  nbytes.pointee = b.count
  return ok()
}
