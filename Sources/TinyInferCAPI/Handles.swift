// Handle objects behind the C API's opaque pointers, and the helpers that
// turn core errors into statuses.

import CTinyInfer
import TinyInferCore
import TinyInferShims

/// A loaded model plus the C strings the API hands out (owned here, freed
/// with the handle).
final class ModelHandle {
  let model: Model
  let inputNames: [UnsafeMutablePointer<CChar>]
  let outputNames: [UnsafeMutablePointer<CChar>]
  let metaKeys: [UnsafeMutablePointer<CChar>]
  let metaValues: [UnsafeMutablePointer<CChar>]
  /// Per-tensor names and quantization arrays for tinf_model_tensor_detail,
  /// and per-op index arrays for tinf_model_op (all owned here).
  let tensorNames: [UnsafeMutablePointer<CChar>]
  let scales: [UnsafeMutablePointer<Float>?]
  let zeroPoints: [UnsafeMutablePointer<Int32>?]
  let opInputs: [UnsafeMutablePointer<Int32>]
  let opOutputs: [UnsafeMutablePointer<Int32>]
  /// The lines of Model.passReport for tinf_model_pass.
  let passLines: [UnsafeMutablePointer<CChar>]

  init(_ model: Model) {
    self.model = model
    let g = model.graph
    tensorNames = g.tensors.map { makeCString($0.name) }
    scales = g.tensors.map { t in
      guard let q = t.quant else { return nil }
      let p = UnsafeMutablePointer<Float>.allocate(capacity: q.scales.count)
      for (i, v) in q.scales.enumerated() { p[i] = v }
      return p
    }
    zeroPoints = g.tensors.map { t in
      guard let q = t.quant else { return nil }
      let p = UnsafeMutablePointer<Int32>.allocate(capacity: q.zeroPoints.count)
      for (i, v) in q.zeroPoints.enumerated() { p[i] = v }
      return p
    }
    opInputs = g.nodes.map { n in
      let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(n.inputs.count, 1))
      for (i, v) in n.inputs.enumerated() { p[i] = Int32(v) }
      return p
    }
    opOutputs = g.nodes.map { n in
      let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(n.outputs.count, 1))
      for (i, v) in n.outputs.enumerated() { p[i] = Int32(v) }
      return p
    }
    inputNames = model.inputs.map { makeCString($0.name) }
    outputNames = model.outputs.map { makeCString($0.name) }
    metaKeys = model.metadata.map { makeCString($0.key) }
    metaValues = model.metadata.map { makeCString($0.value) }
    passLines = model.passReport.map { makeCString($0) }
  }

  deinit {
    for p in inputNames { p.deallocate() }
    for p in outputNames { p.deallocate() }
    for p in metaKeys { p.deallocate() }
    for p in metaValues { p.deallocate() }
    for p in tensorNames { p.deallocate() }
    for p in scales { p?.deallocate() }
    for p in zeroPoints { p?.deallocate() }
    for p in opInputs { p.deallocate() }
    for p in opOutputs { p.deallocate() }
    for p in passLines { p.deallocate() }
  }
}

/// A session keeps its model's handle alive, so frees may come in any order.
final class SessionHandle {
  let session: Session
  let model: ModelHandle
  /// Per-op times of the last profiled run, handed out by tinf_session_run_profiled.
  let opTimes: UnsafeMutablePointer<UInt64>
  /// The result cache tinf_session_run answers from (ResultCache.swift), if bound.
  var resultCache: ResultCacheBinding? = nil
  init(_ session: Session, _ model: ModelHandle) {
    self.session = session
    self.model = model
    let n = max(model.model.graph.nodes.count, 1)
    opTimes = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
    opTimes.initialize(repeating: 0, count: n)
  }
  deinit { opTimes.deallocate() }
}

final class OptionsHandle {
  var options = SessionOptions()
}

final class BuilderHandle {
  /// The graph being built; any change makes the last finish stale.
  var graph = GraphAssembler() {
    didSet { finished = false }
  }
  /// The serialized file (64-byte aligned, so loading it borrows it).
  private(set) var data: UnsafeMutableRawPointer? = nil
  private(set) var count = 0
  var finished = false

  func setBytes(_ bytes: [UInt8]) {
    ti_shim_free(data)
    data = ti_shim_alloc(bytes.count)
    count = data == nil ? 0 : bytes.count
    if let data { bytes.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) } }
  }

  deinit { ti_shim_free(data) }
}

func makeCString(_ s: String) -> UnsafeMutablePointer<CChar> {
  var s = s
  return s.withUTF8 { buf in
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: buf.count + 1)
    for i in 0..<buf.count { p[i] = CChar(bitPattern: buf[i]) }
    p[buf.count] = 0
    return p
  }
}

@inline(__always)
func cString(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

func retain<T: AnyObject>(_ obj: T) -> OpaquePointer {
  OpaquePointer(Unmanaged.passRetained(obj).toOpaque())
}

func modelHandle(_ p: OpaquePointer?) -> ModelHandle? {
  guard let p else { return nil }
  return Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

func sessionHandle(_ p: OpaquePointer?) -> SessionHandle? {
  guard let p else { return nil }
  return Unmanaged<SessionHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

func optionsHandle(_ p: OpaquePointer?) -> OptionsHandle? {
  guard let p else { return nil }
  return Unmanaged<OptionsHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

func builderHandle(_ p: OpaquePointer?) -> BuilderHandle? {
  guard let p else { return nil }
  return Unmanaged<BuilderHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

func setLastError(_ message: String) {
  var m = message
  m.withUTF8 { ti_shim_set_error($0.baseAddress, $0.count) }
}

@inline(__always)
func ok() -> tinf_status { TINF_OK }

func fail(_ status: Status, _ message: String) -> tinf_status {
  setLastError(message)
  return tinf_status(rawValue: UInt32(bitPattern: status.rawValue))
}

func fail(_ e: TinfError) -> tinf_status { fail(e.status, e.message) }

/// Runs a call into the core: TINF_OK, or its error as the status.
func status(_ body: () throws(TinfError) -> Void) -> tinf_status {
  do throws(TinfError) {
    try body()
    return ok()
  } catch {
    return fail(error)
  }
}

func nullArg(_ function: StaticString) -> tinf_status {
  fail(.invalidArgument, string(function) + ": a required pointer argument is NULL")
}

/// TINF_ERR_INVALID_ARGUMENT naming the NULL argument: "tinf_model_stats: out_ops is NULL".
func nullArg(_ function: StaticString, _ argument: StaticString) -> tinf_status {
  fail(.invalidArgument, string(function) + ": " + string(argument) + " is NULL")
}

/// The first of `args` (name, is it NULL) that is NULL, as a failure naming
/// it; nil when none is.
func firstNull(_ function: StaticString, _ args: (StaticString, Bool)...) -> tinf_status? {
  for (name, isNull) in args where isNull { return nullArg(function, name) }
  return nil
}

func string(_ s: StaticString) -> String {
  String(decoding: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount), as: UTF8.self)
}

func dtypeFrom(_ code: Int32) -> DType? {
  guard code > 0 && code < 256 else { return nil }
  return DType(rawValue: UInt8(code))
}

/// Writes `shape` into a C `int64_t dims[TINF_MAX_RANK]` field, zeros after it.
func fillDims<Dims>(_ dims: inout Dims, _ shape: [Int]) {
  withUnsafeMutableBytes(of: &dims) { raw in
    let d = raw.bindMemory(to: Int64.self)
    for i in 0..<d.count { d[i] = i < shape.count ? Int64(shape[i]) : 0 }
  }
}

func fillInfo(_ out: UnsafeMutablePointer<tinf_tensor_info>, _ t: TensorDesc, _ name: UnsafeMutablePointer<CChar>) {
  var info = tinf_tensor_info()
  info.name = UnsafePointer(name)
  info.dtype = Int32(t.dtype.rawValue)
  info.rank = Int32(t.shape.count)
  fillDims(&info.dims, t.shape)
  info.nbytes = t.nbytes
  out.pointee = info
}

/// What the quantizer's and the pruner's handles share: their layers' names
/// (each layer's first output, owned for the C caller) and the file of the
/// last finish (stable for tinf_*_data until the next finish or free).
class FileMakerHandle {
  let layerNames: [UnsafeMutablePointer<CChar>]
  private(set) var data: UnsafeMutableRawPointer? = nil
  private(set) var count = 0

  init(graph g: Graph, layers: [Int]) {
    layerNames = layers.map { makeCString(g.tensors[g.nodes[$0].outputs[0]].name) }
  }

  func setBytes(_ bytes: [UInt8]) -> Bool {
    ti_shim_free(data)
    count = 0
    data = ti_shim_alloc(max(bytes.count, 1))
    guard let data else { return false }
    bytes.withUnsafeBytes { if let b = $0.baseAddress { data.copyMemory(from: b, byteCount: bytes.count) } }
    count = bytes.count
    return true
  }

  deinit {
    for p in layerNames { p.deallocate() }
    ti_shim_free(data)
  }
}
