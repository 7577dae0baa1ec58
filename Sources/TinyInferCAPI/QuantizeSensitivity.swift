// The C API of int8-static's float-sensitive ops (include/tinyinfer.h,
// section "quantization: float-sensitive ops kept in float32", issue 14).

import CTinyInfer
import TinyInferCore

@c @implementation
public func tinf_quantizer_set_auto_float(_ quantizer: OpaquePointer?, _ enabled: Int32) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_set_auto_float") }
  h.quantizer.autoFloat = enabled != 0
  return ok()
}

@c @implementation
public func tinf_quantizer_set_graph_params(_ quantizer: OpaquePointer?, _ enabled: Int32) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_set_graph_params") }
  h.quantizer.graphParams = enabled != 0
  return ok()
}

@c @implementation
public func tinf_quantizer_set_requantization(_ quantizer: OpaquePointer?, _ mode: Int32) -> tinf_status {
  guard let h = quantizerHandle(quantizer) else { return nullArg("tinf_quantizer_set_requantization") }
  guard mode == TINF_REQUANT_FIXED || mode == TINF_REQUANT_FLOAT32 else {
    return fail(.invalidArgument, "unknown requantization \(mode) (0 fixed, 1 float32)")
  }
  h.quantizer.floatRequantization = mode == TINF_REQUANT_FLOAT32
  return ok()
}

@c @implementation
public func tinf_quantizer_float_reason(
  _ quantizer: OpaquePointer?, _ layer: Int32, _ out: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> tinf_status {
  guard let h = quantizerHandle(quantizer), let out else { return nullArg("tinf_quantizer_float_reason") }
  let q = h.quantizer
  guard layer >= 0 && Int(layer) < q.layers.count else {
    return fail(.invalidArgument, "layer \(layer) out of range (\(q.layers.count) layers)")
  }
  let l = Int(layer)
  guard let text = q.floatReason[l] else {
    out.pointee = nil
    return ok()
  }
  if let r = h.reasons[l], r.text == text {
    out.pointee = UnsafePointer(r.c)
    return ok()
  }
  h.reasons[l]?.c.deallocate()
  let c = makeCString(text)
  h.reasons[l] = (text: text, c: c)
  out.pointee = UnsafePointer(c)
  return ok()
}
