// The C API: a thin shell over TinyInferCore. Every function here is checked
// by the compiler against include/tinyinfer.h (`@c @implementation`). This file
// (with Handles.swift) is the only place that turns objects into opaque C
// handles. No function can trap on a caller's input: every pointer and index
// is checked and every core error becomes a status and a per-thread message.

import CTinyInfer
import TinyInferCore
import TinyInferShims

// MARK: - Status and errors

@c @implementation
public func tinf_status_string(_ status: tinf_status) -> UnsafePointer<CChar>? {
  let s: StaticString
  switch Int32(bitPattern: status.rawValue) {
  case 0: s = "ok"
  case 1: s = "invalid argument"
  case 2: s = "i/o error"
  case 3: s = "bad model format"
  case 4: s = "unsupported format version"
  case 5: s = "unsupported op"
  case 6: s = "unsupported dtype"
  case 7: s = "shape mismatch"
  case 8: s = "out of memory"
  case 9: s = "invalid state"
  case 10: s = "internal error"
  case 11: s = "runtime error"
  default: s = "unknown status"
  }
  return cString(s)
}

@c @implementation
public func tinf_last_error() -> UnsafePointer<CChar>? { ti_shim_error() }

// MARK: - Versions

@c @implementation
public func tinf_version_string() -> UnsafePointer<CChar>? { cString("0.1.0") }

@c @implementation
public func tinf_abi_version() -> Int32 { 1 }

@c @implementation
public func tinf_format_version_major() -> Int32 { Int32(ModelFile.versionMajor) }

@c @implementation
public func tinf_format_version_minor() -> Int32 { Int32(ModelFile.versionMinor) }

@c @implementation
public func tinf_cpu_isa() -> UnsafePointer<CChar>? { ti_cpu_level_name(ti_cpu_level()) }

@c @implementation
public func tinf_cpu_isa_detected() -> UnsafePointer<CChar>? { ti_cpu_level_name(ti_cpu_detected_level()) }

@c @implementation
public func tinf_cpu_features() -> UnsafePointer<CChar>? { ti_cpu_features() }

@c @implementation
public func tinf_dtype_size(_ dtype: Int32) -> Int {
  guard let d = dtypeFrom(dtype) else { return 0 }
  return d.size
}

// MARK: - Models

@c @implementation
public func tinf_model_load_file(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> tinf_status {
  guard let path, let out else { return fail(.invalidArgument, "tinf_model_load_file: path and out_model must not be NULL") }
  return status { () throws(TinfError) in
    let m = try Model.load(path: String(cString: path))
    out.pointee = retain(ModelHandle(m))
  }
}

@c @implementation
public func tinf_model_load_buffer(_ data: UnsafeRawPointer?, _ size: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?)
  -> tinf_status
{
  guard let data, let out else { return fail(.invalidArgument, "tinf_model_load_buffer: data and out_model must not be NULL") }
  return status { () throws(TinfError) in
    let m = try Model.load(buffer: UnsafeRawBufferPointer(start: data, count: size))
    out.pointee = retain(ModelHandle(m))
  }
}

@c @implementation
public func tinf_model_load_file_flags(
  _ path: UnsafePointer<CChar>?, _ flags: UInt32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let path, let out else {
    return fail(.invalidArgument, "tinf_model_load_file_flags: path and out_model must not be NULL")
  }
  guard flags & ~loadFlagsKnown == 0 else { return fail(.invalidArgument, "unknown load flags \(flags)") }
  return status { () throws(TinfError) in
    let m = try Model.load(
      path: String(cString: path), optimize: flags & loadNoGraphPasses == 0, sparse: sparseChoice(flags))
    out.pointee = retain(ModelHandle(m))
  }
}

@c @implementation
public func tinf_model_load_buffer_flags(
  _ data: UnsafeRawPointer?, _ size: Int, _ flags: UInt32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let data, let out else {
    return fail(.invalidArgument, "tinf_model_load_buffer_flags: data and out_model must not be NULL")
  }
  guard flags & ~loadFlagsKnown == 0 else { return fail(.invalidArgument, "unknown load flags \(flags)") }
  return status { () throws(TinfError) in
    let m = try Model.load(
      buffer: UnsafeRawBufferPointer(start: data, count: size), optimize: flags & loadNoGraphPasses == 0,
      sparse: sparseChoice(flags))
    out.pointee = retain(ModelHandle(m))
  }
}

/// TINF_LOAD_NO_GRAPH_PASSES, TINF_LOAD_DENSE, TINF_LOAD_SPARSE_ALWAYS, and every flag this library knows.
let loadNoGraphPasses: UInt32 = 1
private let loadDense: UInt32 = 2
private let loadSparseAlways: UInt32 = 4
let loadFlagsKnown: UInt32 = 7

func sparseChoice(_ flags: UInt32) -> SparseChoice {
  flags & loadDense != 0 ? .never : (flags & loadSparseAlways != 0 ? .always : .auto)
}

@c @implementation
public func tinf_model_free(_ model: OpaquePointer?) {
  guard let model else { return }
  Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(model)).release()
}

@c @implementation
public func tinf_model_input_count(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_input_count") }
  out.pointee = Int32(m.model.graph.inputs.count)
  return ok()
}

@c @implementation
public func tinf_model_output_count(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_output_count") }
  out.pointee = Int32(m.model.graph.outputs.count)
  return ok()
}

@c @implementation
public func tinf_model_input_info(_ model: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_info>?)
  -> tinf_status
{
  tensorInfo(modelHandle(model).map { ($0.model.graph, $0) }, .input, index, out, "tinf_model_input_info")
}

@c @implementation
public func tinf_model_output_info(_ model: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_info>?)
  -> tinf_status
{
  tensorInfo(modelHandle(model).map { ($0.model.graph, $0) }, .output, index, out, "tinf_model_output_info")
}

/// Input or output `index` of `source` (the model's graph, or a session's
/// with its input shapes, and the model that names the tensors).
private func tensorInfo(
  _ source: (Graph, ModelHandle)?, _ side: GraphSide, _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_info>?,
  _ fn: StaticString
) -> tinf_status {
  guard let source, let out else { return nullArg(fn) }
  let m = source.1
  return side.info(source.0, side == .input ? m.inputNames : m.outputNames, index, out)
}

@c @implementation
public func tinf_model_find_input(_ model: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<Int32>?)
  -> tinf_status
{
  find(model, .input, name, out, "tinf_model_find_input")
}

@c @implementation
public func tinf_model_find_output(_ model: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<Int32>?)
  -> tinf_status
{
  find(model, .output, name, out, "tinf_model_find_output")
}

private func find(
  _ model: OpaquePointer?, _ side: GraphSide, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<Int32>?,
  _ fn: StaticString
) -> tinf_status {
  guard let m = modelHandle(model), let name, let out else { return nullArg(fn) }
  let s = String(cString: name)
  let g = m.model.graph
  for (i, t) in (side == .input ? g.inputs : g.outputs).enumerated() where g.tensors[t].name == s {
    out.pointee = Int32(i)
    return ok()
  }
  return fail(.invalidArgument, "the model has no \(side.name) named '\(s)'")
}

@c @implementation
public func tinf_model_metadata_count(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_metadata_count") }
  out.pointee = Int32(m.metaKeys.count)
  return ok()
}

@c @implementation
public func tinf_model_metadata(
  _ model: OpaquePointer?, _ index: Int32, _ key: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
  _ value: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> tinf_status {
  guard let m = modelHandle(model), let key, let value else { return nullArg("tinf_model_metadata") }
  guard index >= 0 && Int(index) < m.metaKeys.count else {
    return fail(.invalidArgument, "metadata index \(index) out of range (\(m.metaKeys.count) entries)")
  }
  key.pointee = UnsafePointer(m.metaKeys[Int(index)])
  value.pointee = UnsafePointer(m.metaValues[Int(index)])
  return ok()
}

@c @implementation
public func tinf_model_stats(
  _ model: OpaquePointer?, _ ops: UnsafeMutablePointer<Int32>?, _ tensors: UnsafeMutablePointer<Int32>?,
  _ weights: UnsafeMutablePointer<Int>?
) -> tinf_status {
  let fn: StaticString = "tinf_model_stats"
  if let bad = firstNull(fn, ("model", model == nil), ("out_ops", ops == nil), ("out_tensors", tensors == nil),
    ("out_weight_bytes", weights == nil)) { return bad }
  guard let m = modelHandle(model), let ops, let tensors, let weights else { return nullArg(fn) }
  ops.pointee = Int32(m.model.graph.nodes.count)
  tensors.pointee = Int32(m.model.graph.tensors.count)
  weights.pointee = m.model.weightBytes
  return ok()
}

// MARK: - Options

@c @implementation
public func tinf_options_create(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> tinf_status {
  guard let out else { return nullArg("tinf_options_create") }
  out.pointee = retain(OptionsHandle())
  return ok()
}

@c @implementation
public func tinf_options_free(_ options: OpaquePointer?) {
  guard let options else { return }
  Unmanaged<OptionsHandle>.fromOpaque(UnsafeRawPointer(options)).release()
}

@c @implementation
public func tinf_options_set_threads(_ options: OpaquePointer?, _ threads: Int32) -> tinf_status {
  guard let o = optionsHandle(options) else { return nullArg("tinf_options_set_threads") }
  guard threads >= 0 && threads <= 256 else { return fail(.invalidArgument, "threads must be 0...256, got \(threads)") }
  o.options.threads = Int(threads)
  return ok()
}

// MARK: - Sessions

@c @implementation
public func tinf_session_create(
  _ model: OpaquePointer?, _ options: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_session_create") }
  let opts = optionsHandle(options)?.options ?? SessionOptions()
  do throws(TinfError) {
    let s = try Session.create(model: m.model, options: opts)
    out.pointee = retain(SessionHandle(s, m))
    return ok()
  } catch {
    return fail(error)
  }
}

@c @implementation
public func tinf_session_free(_ session: OpaquePointer?) {
  guard let session else { return }
  // Waits for a run in progress on another thread (never frees its arena
  // under it); a run that starts later fails with TINF_ERR_INVALID_STATE
  // while the handle lives.
  sessionHandle(session)?.session.close()
  Unmanaged<SessionHandle>.fromOpaque(UnsafeRawPointer(session)).release()
}

@c @implementation
public func tinf_session_set_input(_ session: OpaquePointer?, _ index: Int32, _ data: UnsafeRawPointer?, _ nbytes: Int)
  -> tinf_status
{
  copy(session, .input, index, data.map { UnsafeMutableRawPointer(mutating: $0) }, nbytes, "tinf_session_set_input")
}

@c @implementation
public func tinf_session_input_data(
  _ session: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
  _ nbytes: UnsafeMutablePointer<Int>?
) -> tinf_status {
  if let bad = firstNull("tinf_session_input_data", ("session", session == nil), ("out_data", out == nil),
    ("out_nbytes", nbytes == nil)) { return bad }
  guard let out else { return nullArg("tinf_session_input_data") }
  return address(session, .input, index, nbytes, "tinf_session_input_data") { out.pointee = $0 }
}

@c @implementation
public func tinf_session_run(_ session: OpaquePointer?) -> tinf_status {
  guard let s = sessionHandle(session) else { return nullArg("tinf_session_run") }
  if let c = s.resultCache { return status { () throws(TinfError) in try c.run(s.session) } }
  return status { () throws(TinfError) in try s.session.run() }
}

@c @implementation
public func tinf_session_get_output(_ session: OpaquePointer?, _ index: Int32, _ dst: UnsafeMutableRawPointer?, _ nbytes: Int)
  -> tinf_status
{
  copy(session, .output, index, dst, nbytes, "tinf_session_get_output")
}

@c @implementation
public func tinf_session_output_data(
  _ session: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?,
  _ nbytes: UnsafeMutablePointer<Int>?
) -> tinf_status {
  if let bad = firstNull("tinf_session_output_data", ("session", session == nil), ("out_data", out == nil),
    ("out_nbytes", nbytes == nil)) { return bad }
  guard let out else { return nullArg("tinf_session_output_data") }
  return address(session, .output, index, nbytes, "tinf_session_output_data") { out.pointee = UnsafeRawPointer($0) }
}

/// Copies `nbytes` (the tensor's size) from `caller` into input `index`, or
/// from output `index` into `caller`.
private func copy(
  _ session: OpaquePointer?, _ side: GraphSide, _ index: Int32, _ caller: UnsafeMutableRawPointer?, _ nbytes: Int,
  _ fn: StaticString
) -> tinf_status {
  guard let caller else { return nullArg(fn) }
  return withBuffer(session, side, index, fn) { buf in
    guard nbytes == buf.count else {
      return fail(.invalidArgument, "\(side.name) \(index) has \(buf.count) bytes, the caller's buffer \(nbytes)")
    }
    if let b = buf.baseAddress {
      if side == .input { b.copyMemory(from: caller, byteCount: nbytes) } else { caller.copyMemory(from: b, byteCount: nbytes) }
    }
    return ok()
  }
}

/// Gives the address and size of input (output) `index` in the session's arena.
private func address(
  _ session: OpaquePointer?, _ side: GraphSide, _ index: Int32, _ nbytes: UnsafeMutablePointer<Int>?,
  _ fn: StaticString, _ set: (UnsafeMutableRawPointer?) -> Void
) -> tinf_status {
  withBuffer(session, side, index, fn) { buf in
    set(buf.baseAddress)
    nbytes?.pointee = buf.count
    return ok()
  }
}

/// Calls `body` with the session's buffer of input or output `index`, once
/// the session and the index are checked.
private func withBuffer(
  _ session: OpaquePointer?, _ side: GraphSide, _ index: Int32, _ fn: StaticString,
  _ body: (UnsafeMutableRawBufferPointer) -> tinf_status
) -> tinf_status {
  guard let s = sessionHandle(session) else { return nullArg(fn) }
  if let bad = side.check(s.session.graph, index) { return bad }
  let i = Int(index)
  return body(side == .input ? s.session.inputBuffer(i) : UnsafeMutableRawBufferPointer(mutating: s.session.outputBuffer(i)))
}

@c @implementation
public func tinf_session_arena_bytes(
  _ session: OpaquePointer?, _ arena: UnsafeMutablePointer<Int>?, _ unplanned: UnsafeMutablePointer<Int>?
) -> tinf_status {
  if let bad = firstNull("tinf_session_arena_bytes", ("session", session == nil), ("out_arena", arena == nil),
    ("out_unplanned", unplanned == nil)) { return bad }
  guard let s = sessionHandle(session), let arena, let unplanned else { return nullArg("tinf_session_arena_bytes") }
  arena.pointee = s.session.plan.size
  unplanned.pointee = s.session.plan.unplannedSize
  return ok()
}

@c @implementation
public func tinf_session_threads(_ session: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let s = sessionHandle(session), let out else { return nullArg("tinf_session_threads") }
  out.pointee = Int32(s.session.threads)
  return ok()
}

// MARK: - Op and attribute names

@c @implementation
public func tinf_op_name(_ op: Int32) -> UnsafePointer<CChar>? { OpKind.from(code: Int(op)).map { cString($0.staticName) } }

@c @implementation
public func tinf_op_count() -> Int32 { Int32(OpKind.maxCode) }

@c @implementation
public func tinf_op_traits(
  _ op: Int32, _ minInputs: UnsafeMutablePointer<Int32>?, _ maxInputs: UnsafeMutablePointer<Int32>?,
  _ maxOutputs: UnsafeMutablePointer<Int32>?, _ flags: UnsafeMutablePointer<UInt32>?,
  _ weightSlots: UnsafeMutablePointer<UInt32>?
) -> tinf_status {
  guard let k = OpKind.from(code: Int(op)) else { return fail(.unsupportedOp, "unknown op id \(op)") }
  let t = k.traits
  var f: UInt32 = 0
  if t.fusedActivation { f |= TINF_OP_FUSED_ACTIVATION.rawValue }
  if t.inPlace { f |= TINF_OP_IN_PLACE.rawValue }
  if t.int8 != .none { f |= TINF_OP_INT8_KERNEL.rawValue }
  if t.hybrid { f |= TINF_OP_HYBRID_KERNEL.rawValue }
  minInputs?.pointee = Int32(t.inputs.lowerBound)
  maxInputs?.pointee = Int32(t.inputs.upperBound)
  maxOutputs?.pointee = Int32(t.outputs.upperBound)
  flags?.pointee = f
  weightSlots?.pointee = t.weightSlots.mask
  return ok()
}

@c @implementation
public func tinf_attr_name(_ key: Int32) -> UnsafePointer<CChar>? { AttrKey.from(code: Int(key)).map { cString($0.staticName) } }

@c @implementation
public func tinf_attr_count() -> Int32 { Int32(AttrKey.maxCode) }

// MARK: - Inspection and profiling

@c @implementation
public func tinf_model_tensor_count(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_tensor_count") }
  out.pointee = Int32(m.model.graph.tensors.count)
  return ok()
}

@c @implementation
public func tinf_model_tensor_detail(
  _ model: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_detail>?
) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_tensor_detail") }
  let g = m.model.graph
  guard index >= 0 && Int(index) < g.tensors.count else {
    return fail(.invalidArgument, "tensor index \(index) out of range (\(g.tensors.count) tensors)")
  }
  let i = Int(index)
  let t = g.tensors[i]
  var d = tinf_tensor_detail()
  d.name = UnsafePointer(m.tensorNames[i])
  d.dtype = Int32(t.dtype.rawValue)
  d.rank = Int32(t.shape.count)
  fillDims(&d.dims, t.shape)
  d.nbytes = t.nbytes
  d.kind = t.constant != nil ? 1 : (t.folded ? 2 : (g.inputs.contains(i) ? 3 : 0))
  d.quant_axis = Int32(t.quant?.axis ?? -1)
  d.quant_count = Int32(t.quant?.scales.count ?? 0)
  d.scales = UnsafePointer(m.scales[i])
  d.zero_points = UnsafePointer(m.zeroPoints[i])
  out.pointee = d
  return ok()
}

@c @implementation
public func tinf_model_op(
  _ model: OpaquePointer?, _ index: Int32, _ op: UnsafeMutablePointer<Int32>?, _ nIn: UnsafeMutablePointer<Int32>?,
  _ inputs: UnsafeMutablePointer<UnsafePointer<Int32>?>?, _ nOut: UnsafeMutablePointer<Int32>?,
  _ outputs: UnsafeMutablePointer<UnsafePointer<Int32>?>?
) -> tinf_status {
  if let bad = firstNull("tinf_model_op", ("model", model == nil), ("out_op", op == nil), ("out_n_inputs", nIn == nil),
    ("out_inputs", inputs == nil), ("out_n_outputs", nOut == nil), ("out_outputs", outputs == nil)) { return bad }
  guard let m = modelHandle(model), let op, let nIn, let inputs, let nOut, let outputs else {
    return nullArg("tinf_model_op")
  }
  let g = m.model.graph
  guard index >= 0 && Int(index) < g.nodes.count else {
    return fail(.invalidArgument, "op index \(index) out of range (\(g.nodes.count) ops)")
  }
  let n = g.nodes[Int(index)]
  op.pointee = Int32(n.op.rawValue)
  nIn.pointee = Int32(n.inputs.count)
  inputs.pointee = UnsafePointer(m.opInputs[Int(index)])
  nOut.pointee = Int32(n.outputs.count)
  outputs.pointee = UnsafePointer(m.opOutputs[Int(index)])
  return ok()
}

@c @implementation
public func tinf_model_sizes(
  _ model: OpaquePointer?, _ header: UnsafeMutablePointer<Int>?, _ graph: UnsafeMutablePointer<Int>?,
  _ data: UnsafeMutablePointer<Int>?, _ folded: UnsafeMutablePointer<Int>?
) -> tinf_status {
  if let bad = firstNull("tinf_model_sizes", ("model", model == nil), ("out_header", header == nil),
    ("out_graph", graph == nil), ("out_data", data == nil), ("out_folded", folded == nil)) { return bad }
  guard let m = modelHandle(model), let header, let graph, let data, let folded else { return nullArg("tinf_model_sizes") }
  header.pointee = m.model.partSizes.header
  graph.pointee = m.model.partSizes.graph
  data.pointee = m.model.partSizes.data
  folded.pointee = m.model.foldedBytes
  return ok()
}

@c @implementation
public func tinf_model_load_ns(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<UInt64>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_load_ns") }
  out.pointee = m.model.loadNanoseconds
  return ok()
}

@c @implementation
public func tinf_model_pass_count(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_pass_count") }
  out.pointee = Int32(m.passLines.count)
  return ok()
}

@c @implementation
public func tinf_model_pass(
  _ model: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_model_pass") }
  guard index >= 0 && Int(index) < m.passLines.count else {
    return fail(.invalidArgument, "pass index \(index) out of range (\(m.passLines.count) entries)")
  }
  out.pointee = UnsafePointer(m.passLines[Int(index)])
  return ok()
}

@c @implementation
public func tinf_session_run_profiled(
  _ session: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt64>?>?, _ count: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  if let bad = firstNull("tinf_session_run_profiled", ("session", session == nil), ("out_ns", out == nil),
    ("out_count", count == nil)) { return bad }
  guard let s = sessionHandle(session), let out, let count else { return nullArg("tinf_session_run_profiled") }
  do throws(TinfError) {
    try s.session.run(profile: true)
  } catch {
    return fail(error)
  }
  let times = s.session.opNanoseconds
  for (i, t) in times.enumerated() { s.opTimes[i] = t }
  out.pointee = UnsafePointer(s.opTimes)
  count.pointee = Int32(times.count)
  return ok()
}

// MARK: - Input shapes

@c @implementation
public func tinf_options_set_input_shape(
  _ options: OpaquePointer?, _ index: Int32, _ rank: Int32, _ dims: UnsafePointer<Int64>?
) -> tinf_status {
  guard let o = optionsHandle(options) else { return nullArg("tinf_options_set_input_shape") }
  return status { () throws(TinfError) in try o.options.setInputShape(Int(index), rank: Int(rank), dims: dims) }
}

@c @implementation
public func tinf_session_input_info(_ session: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_info>?)
  -> tinf_status
{
  tensorInfo(sessionHandle(session).map { ($0.session.graph, $0.model) }, .input, index, out, "tinf_session_input_info")
}

@c @implementation
public func tinf_session_output_info(_ session: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_info>?)
  -> tinf_status
{
  tensorInfo(sessionHandle(session).map { ($0.session.graph, $0.model) }, .output, index, out, "tinf_session_output_info")
}

/// The C API's functions on graph inputs and outputs come in pairs that
/// differ only in the side they read.
private enum GraphSide {
  case input, output

  var name: String { self == .input ? "input" : "output" }

  /// The failure status when `index` is not one of the graph's inputs (outputs).
  func check(_ g: Graph, _ index: Int32) -> tinf_status? {
    let n = self == .input ? g.inputs.count : g.outputs.count
    guard index >= 0 && Int(index) < n else {
      return fail(.invalidArgument, "\(name) index \(index) out of range (the model has \(n))")
    }
    return nil
  }

  /// Fills `out` with input (output) `index` of `g`, named `names[index]`.
  func info(
    _ g: Graph, _ names: [UnsafeMutablePointer<CChar>], _ index: Int32, _ out: UnsafeMutablePointer<tinf_tensor_info>
  ) -> tinf_status {
    if let bad = check(g, index) { return bad }
    fillInfo(out, g.tensors[self == .input ? g.inputs[Int(index)] : g.outputs[Int(index)]], names[Int(index)])
    return ok()
  }
}

// MARK: - Reliability: the work limit (issue 12)

@c @implementation
public func tinf_options_set_max_work(_ options: OpaquePointer?, _ maxWork: UInt64) -> tinf_status {
  guard let o = optionsHandle(options) else { return nullArg("tinf_options_set_max_work", "options") }
  guard maxWork > 0 else { return fail(.invalidArgument, "tinf_options_set_max_work: max_work must be at least 1") }
  o.options.maxWork = maxWork
  return ok()
}

@c @implementation
public func tinf_session_work(_ session: OpaquePointer?, _ out: UnsafeMutablePointer<UInt64>?) -> tinf_status {
  if let bad = firstNull("tinf_session_work", ("session", session == nil), ("out_work", out == nil)) { return bad }
  guard let s = sessionHandle(session), let out else { return nullArg("tinf_session_work") }
  out.pointee = s.session.work
  return ok()
}

// MARK: - State: resource variables (issue 14)

@c @implementation
public func tinf_session_reset_state(_ session: OpaquePointer?) -> tinf_status {
  guard let s = sessionHandle(session) else { return nullArg("tinf_session_reset_state", "session") }
  return status { () throws(TinfError) in try s.session.resetState() }
}

@c @implementation
public func tinf_session_state_count(_ session: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  if let bad = firstNull("tinf_session_state_count", ("session", session == nil), ("out_count", out == nil)) {
    return bad
  }
  guard let s = sessionHandle(session), let out else { return nullArg("tinf_session_state_count") }
  out.pointee = Int32(truncatingIfNeeded: s.session.variables?.count ?? 0)
  return ok()
}

// MARK: - Control flow: subgraphs (issue 14)

@c @implementation
public func tinf_builder_add_subgraph(
  _ builder: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ firstOp: Int32, _ nIn: Int32,
  _ inputs: UnsafePointer<Int32>?, _ nOut: Int32, _ outputs: UnsafePointer<Int32>?, _ out: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  if let bad = firstNull("tinf_builder_add_subgraph", ("builder", builder == nil), ("name", name == nil),
    ("out_index", out == nil)) { return bad }
  guard let b = builderHandle(builder), let name, let out else { return nullArg("tinf_builder_add_subgraph") }
  return status { () throws(TinfError) in
    let k = try b.graph.addSubgraph(
      name: String(cString: name), firstOp: Int(firstOp), inputs: inputs, count: Int(nIn), outputs: outputs,
      count: Int(nOut))
    out.pointee = Int32(k)
  }
}
