// The C API of the quantizer (include/tinyinfer.h, section "quantization"):
// a thin shell over TinyInferCore's Quantizer.

import CTinyInfer
import TinyInferCore
import TinyInferShims

final class QuantizerHandle: FileMakerHandle {
  let quantizer: Quantizer
  /// C copies of `quantizer.floatReason` (QuantizeSensitivity.swift).
  var reasons: [(text: String, c: UnsafeMutablePointer<CChar>)?]

  init(_ q: Quantizer) {
    quantizer = q
    reasons = [(text: String, c: UnsafeMutablePointer<CChar>)?](repeating: nil, count: q.layers.count)
    super.init(graph: q.model.graph, layers: q.layers)
  }

  deinit { for r in reasons { r?.c.deallocate() } }
}

func quantizerHandle(_ p: OpaquePointer?) -> QuantizerHandle? {
  guard let p else { return nil }
  return Unmanaged<QuantizerHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

/// Runs `body` on the quantizer with the caller's input buffers (one per
/// graph input), once the handle and every pointer are checked.
private func withInputs(
  _ quantizer: OpaquePointer?, _ n: Int32, _ inputs: UnsafePointer<UnsafeRawPointer?>?, _ nbytes: UnsafePointer<Int>?,
  _ fn: StaticString, _ body: (Quantizer, [UnsafeRawBufferPointer]) throws(TinfError) -> Void
) -> tinf_status {
  guard let h = quantizerHandle(quantizer), n >= 0 && n <= 1 << 16, n == 0 || (inputs != nil && nbytes != nil) else {
    return nullArg(fn)
  }
  var bufs: [UnsafeRawBufferPointer] = []
  for i in 0..<Int(n) {
    guard let p = inputs![i], nbytes![i] >= 0 else { return nullArg(fn) }
    bufs.append(UnsafeRawBufferPointer(start: p, count: nbytes![i]))
  }
  return status { () throws(TinfError) in try body(h.quantizer, bufs) }
}

@c @implementation
public func tinf_quantizer_create(_ model: OpaquePointer?, _ mode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?)
  -> tinf_status
{
  guard let m = modelHandle(model), let out else { return nullArg("tinf_quantizer_create") }
  guard let md = QuantMode(rawValue: Int(mode)) else {
    return fail(.invalidArgument, "unknown quantization mode \(mode) (1 fp16, 2 int8-dynamic, 3 int8-static, 4 int4)")
  }
  do throws(TinfError) {
    let q = try Quantizer.make(model: m.model, mode: md)
    out.pointee = retain(QuantizerHandle(q))
    return ok()
  } catch {
    return fail(error)
  }
}

@c @implementation
public func tinf_quantizer_free(_ quantizer: OpaquePointer?) {
  guard let quantizer else { return }
  Unmanaged<QuantizerHandle>.fromOpaque(UnsafeRawPointer(quantizer)).release()
}

@c @implementation
public func tinf_quantizer_set_method(_ quantizer: OpaquePointer?, _ method: Int32, _ percentile: Float) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_set_method") }
  guard let m = CalibrationMethod(rawValue: Int(method)) else {
    return fail(.invalidArgument, "unknown calibration method \(method) (1 minmax, 2 percentile, 3 mse, 4 entropy)")
  }
  if percentile != 0 {
    guard percentile >= 50 && percentile <= 100 else {
      return fail(.invalidArgument, "percentile must be in 50...100, got \(percentile)")
    }
    h.quantizer.percentile = percentile
  }
  h.quantizer.method = m
  return ok()
}

@c @implementation
public func tinf_quantizer_observe(
  _ quantizer: OpaquePointer?, _ n: Int32, _ inputs: UnsafePointer<UnsafeRawPointer?>?, _ nbytes: UnsafePointer<Int>?
) -> tinf_status {
  withInputs(quantizer, n, inputs, nbytes, "tinf_quantizer_observe") { (q, bufs) throws(TinfError) in try q.observe(bufs) }
}

@c @implementation
public func tinf_quantizer_sample_count(_ quantizer: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> tinf_status {
  guard let h = quantizerHandle(quantizer), let out else { return nullArg("tinf_quantizer_sample_count") }
  out.pointee = Int64(h.quantizer.samples)
  return ok()
}

@c @implementation
public func tinf_quantizer_tensor_range(
  _ quantizer: OpaquePointer?, _ tensor: Int32, _ lo: UnsafeMutablePointer<Float>?, _ hi: UnsafeMutablePointer<Float>?,
  _ mn: UnsafeMutablePointer<Float>?, _ mx: UnsafeMutablePointer<Float>?
) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_tensor_range") }
  let n = h.quantizer.model.graph.tensors.count
  guard tensor >= 0 && Int(tensor) < n else { return fail(.invalidArgument, "tensor \(tensor) out of range (\(n) tensors)") }
  guard let r = h.quantizer.range(of: Int(tensor)), let o = h.quantizer.observedRange(of: Int(tensor)) else {
    return fail(.invalidState, "no calibration data for tensor \(tensor) (not a float32 activation, or nothing observed)")
  }
  lo?.pointee = r.lo
  hi?.pointee = r.hi
  mn?.pointee = o.lo
  mx?.pointee = o.hi
  return ok()
}

@c @implementation
public func tinf_quantizer_layer_count(_ quantizer: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> tinf_status {
  guard let h = quantizerHandle(quantizer), let out else { return nullArg("tinf_quantizer_layer_count") }
  out.pointee = Int32(h.quantizer.layers.count)
  return ok()
}

@c @implementation
public func tinf_quantizer_layer(
  _ quantizer: OpaquePointer?, _ layer: Int32, _ opIndex: UnsafeMutablePointer<Int32>?, _ op: UnsafeMutablePointer<Int32>?,
  _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?, _ quantized: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_layer") }
  let q = h.quantizer
  guard layer >= 0 && Int(layer) < q.layers.count else {
    return fail(.invalidArgument, "layer \(layer) out of range (\(q.layers.count) layers)")
  }
  let l = Int(layer)
  let k = q.layers[l]
  opIndex?.pointee = Int32(k)
  op?.pointee = Int32(q.model.graph.nodes[k].op.rawValue)
  name?.pointee = UnsafePointer(h.layerNames[l])
  quantized?.pointee = q.layerQuantized[l] ? 1 : 0
  return ok()
}

@c @implementation
public func tinf_quantizer_keep_float(_ quantizer: OpaquePointer?, _ layer: Int32, _ keep: Int32) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_keep_float") }
  let q = h.quantizer
  guard layer >= 0 && Int(layer) < q.layers.count else {
    return fail(.invalidArgument, "layer \(layer) out of range (\(q.layers.count) layers)")
  }
  q.keepFloat[Int(layer)] = keep != 0
  return ok()
}

@c @implementation
public func tinf_quantizer_finish(_ quantizer: OpaquePointer?) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_finish") }
  do throws(TinfError) {
    let bytes = try h.quantizer.finish()
    guard h.setBytes(bytes) else { return fail(.outOfMemory, "cannot allocate \(bytes.count) bytes for the file") }
    return ok()
  } catch {
    return fail(error)
  }
}

@c @implementation
public func tinf_quantizer_data(
  _ quantizer: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?, _ nbytes: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let h = quantizerHandle(quantizer), let out, let nbytes else { return nullArg("tinf_quantizer_data") }
  guard let d = h.data, h.count > 0 else { return fail(.invalidState, "tinf_quantizer_data: call tinf_quantizer_finish first") }
  out.pointee = UnsafeRawPointer(d)
  nbytes.pointee = h.count
  return ok()
}

@c @implementation
public func tinf_quantizer_compare(
  _ quantizer: OpaquePointer?, _ n: Int32, _ inputs: UnsafePointer<UnsafeRawPointer?>?, _ nbytes: UnsafePointer<Int>?
) -> tinf_status {
  withInputs(quantizer, n, inputs, nbytes, "tinf_quantizer_compare") { (q, bufs) throws(TinfError) in try q.compare(bufs) }
}

@c @implementation
public func tinf_quantizer_layer_error(
  _ quantizer: OpaquePointer?, _ layer: Int32, _ signal: UnsafeMutablePointer<Double>?,
  _ noise: UnsafeMutablePointer<Double>?
) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_layer_error") }
  return errorSums(h.quantizer.signal, h.quantizer.noise, layer, "layer", signal, noise)
}

@c @implementation
public func tinf_quantizer_output_error(
  _ quantizer: OpaquePointer?, _ output: Int32, _ signal: UnsafeMutablePointer<Double>?,
  _ noise: UnsafeMutablePointer<Double>?
) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_output_error") }
  return errorSums(h.quantizer.outputSignal, h.quantizer.outputNoise, output, "output", signal, noise)
}

/// Entry `index` of the per-layer (per-output) sums of x^2 and (x - x_q)^2.
private func errorSums(
  _ signals: [Double], _ noises: [Double], _ index: Int32, _ what: String, _ signal: UnsafeMutablePointer<Double>?,
  _ noise: UnsafeMutablePointer<Double>?
) -> tinf_status {
  guard index >= 0 && Int(index) < signals.count else {
    return fail(.invalidArgument, "\(what) \(index) out of range (\(signals.count) \(what)s)")
  }
  signal?.pointee = signals[Int(index)]
  noise?.pointee = noises[Int(index)]
  return ok()
}
