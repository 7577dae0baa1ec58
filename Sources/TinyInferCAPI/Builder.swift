// The C API of the graph builder: a shell over the core's GraphAssembler
// (which checks every argument against the format's limits) that checks
// handles and pointers; finish serializes and validates the bytes by
// loading them.

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
  b.graph.setMetadata(String(cString: key), String(cString: value))
  return ok()
}

@c @implementation
public func tinf_builder_add_tensor(
  _ builder: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ dtype: Int32, _ rank: Int32,
  _ dims: UnsafePointer<Int64>?, _ data: UnsafeRawPointer?, _ nbytes: Int, _ out: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  if let bad = firstNull("tinf_builder_add_tensor", ("builder", builder == nil), ("name", name == nil),
    ("out_index", out == nil)) { return bad }
  guard let b = builderHandle(builder), let name else { return nullArg("tinf_builder_add_tensor") }
  guard (data == nil) == (nbytes == 0) else {
    return fail(
      .invalidArgument,
      data == nil
        ? "tinf_builder_add_tensor: data is NULL with nbytes \(nbytes) (a computed tensor has NULL data and nbytes 0)"
        : "tinf_builder_add_tensor: nbytes is 0 with non-NULL data (a constant has at least one element)")
  }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in
    let bytes = data.map { UnsafeRawBufferPointer(start: $0, count: nbytes) }
    let t = try g.addTensor(name: String(cString: name), dtype: Int(dtype), rank: Int(rank), dims: dims, data: bytes)
    out?.pointee = Int32(t)
  }
}

@c @implementation
public func tinf_builder_set_quant(
  _ builder: OpaquePointer?, _ tensor: Int32, _ axis: Int32, _ count: Int32, _ scales: UnsafePointer<Float>?,
  _ zeroPoints: UnsafePointer<Int32>?
) -> tinf_status {
  guard let b = builderHandle(builder), let scales, let zeroPoints else { return nullArg("tinf_builder_set_quant") }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in
    try g.setQuant(tensor: Int(tensor), axis: Int(axis), count: Int(count), scales: scales, zeroPoints: zeroPoints)
  }
}

@c @implementation
public func tinf_builder_add_op(
  _ builder: OpaquePointer?, _ op: Int32, _ nIn: Int32, _ inputs: UnsafePointer<Int32>?, _ nOut: Int32,
  _ outputs: UnsafePointer<Int32>?, _ out: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  if let bad = firstNull("tinf_builder_add_op", ("builder", builder == nil), ("out_index", out == nil)) { return bad }
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_add_op") }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in
    let k = try g.addOp(code: Int(op), inputs: inputs, count: Int(nIn), outputs: outputs, count: Int(nOut))
    out?.pointee = Int32(k)
  }
}

private func setAttr(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: () throws(TinfError) -> AttrValue)
  -> tinf_status
{
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_attr") }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in try g.setAttr(op: Int(opIndex), key: Int(key), try value()) }
}

@c @implementation
public func tinf_builder_set_attr_int(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: Int64) -> tinf_status {
  setAttr(builder, opIndex, key) { () throws(TinfError) in .int(value) }
}

@c @implementation
public func tinf_builder_set_attr_float(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: Float) -> tinf_status {
  setAttr(builder, opIndex, key) { () throws(TinfError) in .float(value) }
}

@c @implementation
public func tinf_builder_set_attr_ints(
  _ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ count: Int32, _ values: UnsafePointer<Int64>?
) -> tinf_status {
  setAttr(builder, opIndex, key) { () throws(TinfError) in .ints(try GraphAssembler.list(values, Int(count))) }
}

@c @implementation
public func tinf_builder_set_attr_floats(
  _ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ count: Int32, _ values: UnsafePointer<Float>?
) -> tinf_status {
  setAttr(builder, opIndex, key) { () throws(TinfError) in .floats(try GraphAssembler.list(values, Int(count))) }
}

@c @implementation
public func tinf_builder_set_attr_string(_ builder: OpaquePointer?, _ opIndex: Int32, _ key: Int32, _ value: UnsafePointer<CChar>?)
  -> tinf_status
{
  guard let value else { return nullArg("tinf_builder_set_attr_string") }
  return setAttr(builder, opIndex, key) { () throws(TinfError) in .string(String(cString: value)) }
}

@c @implementation
public func tinf_builder_set_graph_inputs(_ builder: OpaquePointer?, _ count: Int32, _ tensors: UnsafePointer<Int32>?)
  -> tinf_status
{
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_graph_inputs") }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in try g.setGraph(inputs: true, tensors, count: Int(count)) }
}

@c @implementation
public func tinf_builder_set_graph_outputs(_ builder: OpaquePointer?, _ count: Int32, _ tensors: UnsafePointer<Int32>?)
  -> tinf_status
{
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_graph_outputs") }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in try g.setGraph(inputs: false, tensors, count: Int(count)) }
}

/// Applies one change to the builder's graph; the core's error becomes the status.
private func build(_ b: BuilderHandle, _ change: (inout GraphAssembler) throws(TinfError) -> Void) -> tinf_status {
  status { () throws(TinfError) in try change(&b.graph) }
}

@c @implementation
public func tinf_builder_finish(_ builder: OpaquePointer?) -> tinf_status {
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_finish") }
  b.setBytes(b.graph.write())
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

// MARK: - pruning (issue 15): sparse storage of converted sparse constants

@c @implementation
public func tinf_builder_set_store_sparse(_ builder: OpaquePointer?, _ tensor: Int32, _ on: Int32) -> tinf_status {
  guard let b = builderHandle(builder) else { return nullArg("tinf_builder_set_store_sparse") }
  return build(b) { (g: inout GraphAssembler) throws(TinfError) in
    try g.setStoreSparse(tensor: Int(tensor), on != 0)
  }
}
