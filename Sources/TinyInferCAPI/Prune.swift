// The C API of the pruner (include/tinyinfer.h, section "pruning"): a thin
// shell over TinyInferCore's Pruner.

import CTinyInfer
import TinyInferCore
import TinyInferShims

final class PrunerHandle: FileMakerHandle {
  let pruner: Pruner

  init(_ p: Pruner) {
    pruner = p
    super.init(graph: p.model.graph, layers: p.layers)
  }
}

func prunerHandle(_ p: OpaquePointer?) -> PrunerHandle? {
  guard let p else { return nil }
  return Unmanaged<PrunerHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

private func checkLayer(_ p: Pruner, _ layer: Int32) -> tinf_status? {
  guard layer >= 0 && Int(layer) < p.layers.count else {
    return fail(.invalidArgument, "layer \(layer) out of range (the model has \(p.layers.count) prunable layers)")
  }
  return nil
}

@c @implementation
public func tinf_pruner_create(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> tinf_status {
  guard let m = modelHandle(model), let out else { return nullArg("tinf_pruner_create") }
  do throws(TinfError) {
    out.pointee = retain(PrunerHandle(try Pruner(model: m.model)))
    return ok()
  } catch {
    return fail(error)
  }
}

@c @implementation
public func tinf_pruner_free(_ pruner: OpaquePointer?) {
  guard let pruner else { return }
  Unmanaged<PrunerHandle>.fromOpaque(UnsafeRawPointer(pruner)).release()
}

@c @implementation
public func tinf_pruner_layer_count(_ pruner: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let h = prunerHandle(pruner), let out else { return nullArg("tinf_pruner_layer_count") }
  out.pointee = Int32(h.pruner.layers.count)
  return ok()
}

@c @implementation
public func tinf_pruner_layer(
  _ pruner: OpaquePointer?, _ layer: Int32, _ opIndex: UnsafeMutablePointer<Int32>?, _ n: UnsafeMutablePointer<Int64>?,
  _ k: UnsafeMutablePointer<Int64>?, _ run: UnsafeMutablePointer<Int64>?, _ channels: UnsafeMutablePointer<Int64>?,
  _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> tinf_status {
  guard let h = prunerHandle(pruner) else { return nullArg("tinf_pruner_layer") }
  let p = h.pruner
  if let e = checkLayer(p, layer) { return e }
  let l = Int(layer)
  let s = p.shapes[l]
  opIndex?.pointee = Int32(p.layers[l])
  n?.pointee = Int64(s.n)
  k?.pointee = Int64(s.k)
  run?.pointee = Int64(s.run)
  channels?.pointee = Int64(s.inputChannels)
  name?.pointee = UnsafePointer(h.layerNames[l])
  return ok()
}

@c @implementation
public func tinf_pruner_get_weights(_ pruner: OpaquePointer?, _ layer: Int32, _ dst: UnsafeMutablePointer<Float>?, _ count: Int)
  -> tinf_status
{
  guard let h = prunerHandle(pruner), let dst else { return nullArg("tinf_pruner_get_weights") }
  let p = h.pruner
  if let e = checkLayer(p, layer) { return e }
  let w = p.weights[Int(layer)]
  guard count == w.count else { return fail(.invalidArgument, "layer \(layer) has \(w.count) weights, count is \(count)") }
  for i in 0..<w.count { dst[i] = w[i] }
  return ok()
}

@c @implementation
public func tinf_pruner_set_weights(_ pruner: OpaquePointer?, _ layer: Int32, _ src: UnsafePointer<Float>?, _ count: Int)
  -> tinf_status
{
  guard let h = prunerHandle(pruner), let src, count >= 0 else { return nullArg("tinf_pruner_set_weights") }
  return status { () throws(TinfError) in
    try h.pruner.setWeights(layer: Int(layer), UnsafeBufferPointer(start: src, count: count))
  }
}

@c @implementation
public func tinf_pruner_magnitude(_ pruner: OpaquePointer?, _ layer: Int32, _ sparsity: Double) -> tinf_status {
  guard let h = prunerHandle(pruner) else { return nullArg("tinf_pruner_magnitude") }
  guard layer >= -1 else { return fail(.invalidArgument, "layer \(layer): a layer index or -1 (all layers)") }
  return status { () throws(TinfError) in
    try h.pruner.magnitude(layer: layer < 0 ? nil : Int(layer), sparsity: sparsity)
  }
}

@c @implementation
public func tinf_pruner_nm(
  _ pruner: OpaquePointer?, _ layer: Int32, _ n: Int32, _ m: Int32, _ skipped: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  guard let h = prunerHandle(pruner) else { return nullArg("tinf_pruner_nm") }
  guard layer >= -1 else { return fail(.invalidArgument, "layer \(layer): a layer index or -1 (all layers)") }
  return status { () throws(TinfError) in
    let s = try h.pruner.nm(layer: layer < 0 ? nil : Int(layer), n: Int(n), m: Int(m))
    skipped?.pointee = Int32(s.count)
  }
}

@c @implementation
public func tinf_pruner_observe(
  _ pruner: OpaquePointer?, _ n: Int32, _ inputs: UnsafePointer<UnsafeRawPointer?>?, _ nbytes: UnsafePointer<Int>?
) -> tinf_status {
  guard let h = prunerHandle(pruner), n >= 0 && n <= 1 << 16, n == 0 || (inputs != nil && nbytes != nil) else {
    return nullArg("tinf_pruner_observe")
  }
  var bufs: [UnsafeRawBufferPointer] = []
  for i in 0..<Int(n) {
    guard let p = inputs![i], nbytes![i] >= 0 else { return nullArg("tinf_pruner_observe") }
    bufs.append(UnsafeRawBufferPointer(start: p, count: nbytes![i]))
  }
  return status { () throws(TinfError) in try h.pruner.observe(bufs) }
}

@c @implementation
public func tinf_pruner_input_squares(
  _ pruner: OpaquePointer?, _ layer: Int32, _ dst: UnsafeMutablePointer<Double>?, _ count: Int,
  _ positions: UnsafeMutablePointer<Int64>?
) -> tinf_status {
  guard let h = prunerHandle(pruner), let dst else { return nullArg("tinf_pruner_input_squares") }
  let p = h.pruner
  if let e = checkLayer(p, layer) { return e }
  let s = p.inputSquares[Int(layer)]
  guard count == s.count else {
    return fail(.invalidArgument, "layer \(layer) has \(s.count) input channels, count is \(count)")
  }
  for i in 0..<s.count { dst[i] = s[i] }
  positions?.pointee = Int64(p.positions[Int(layer)])
  return ok()
}

@c @implementation
public func tinf_pruner_finish(_ pruner: OpaquePointer?) -> tinf_status {
  guard let h = prunerHandle(pruner) else { return nullArg("tinf_pruner_finish") }
  do throws(TinfError) {
    let bytes = try h.pruner.finish()
    guard h.setBytes(bytes) else { return fail(.outOfMemory, "cannot allocate \(bytes.count) bytes for the file") }
    return ok()
  } catch {
    return fail(error)
  }
}

@c @implementation
public func tinf_pruner_data(
  _ pruner: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?, _ nbytes: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let h = prunerHandle(pruner), let out, let nbytes else { return nullArg("tinf_pruner_data") }
  guard let d = h.data, h.count > 0 else { return fail(.invalidState, "tinf_pruner_data: call tinf_pruner_finish first") }
  out.pointee = UnsafeRawPointer(d)
  nbytes.pointee = h.count
  return ok()
}

@c @implementation
public func tinf_model_tensor_storage(
  _ model: OpaquePointer?, _ index: Int32, _ sparse: UnsafeMutablePointer<Int32>?, _ stored: UnsafeMutablePointer<Int>?,
  _ zeros: UnsafeMutablePointer<Double>?
) -> tinf_status {
  guard let h = modelHandle(model) else { return nullArg("tinf_model_tensor_storage") }
  let m = h.model
  let g = m.graph
  guard index >= 0 && Int(index) < g.tensors.count else {
    return fail(.invalidArgument, "tensor \(index) out of range (\(g.tensors.count) tensors)")
  }
  let t = Int(index)
  let d = g.tensors[t]
  let enc = t < m.encodedBytes.count ? m.encodedBytes[t] : -1
  sparse?.pointee = enc >= 0 ? 1 : 0
  stored?.pointee = enc >= 0 ? enc : (d.constant != nil ? d.nbytes : 0)
  var fraction = 0.0
  if d.isConstant, let p = m.constantData(t), d.dtype.size > 0, d.count > 0 {
    let es = d.dtype.size
    let bytes = UnsafeRawPointer(p)
    var z = 0
    for e in 0..<d.count {
      var all = true
      for b in 0..<es where bytes.load(fromByteOffset: e &* es &+ b, as: UInt8.self) != 0 { all = false }
      if all { z &+= 1 }
    }
    fraction = Double(z) / Double(d.count)
  }
  zeros?.pointee = fraction
  return ok()
}
