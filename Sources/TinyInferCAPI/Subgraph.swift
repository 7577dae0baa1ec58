// The C API for running to and from intermediate tensors and for the result
// cache's hash (issue 18): tinf_model_subgraph, tinf_hash64.

import CTinyInfer
import TinyInferCore
import TinyInferShims

/// TINF_SUBGRAPH_ADD_GRAPH_INPUTS and every flag tinf_model_subgraph knows.
private let subgraphAddGraphInputs: UInt32 = 1
private let subgraphFlagsKnown: UInt32 = 1

/// `count` C strings at `names` (each checked non-NULL) as Swift strings.
private func names(_ names: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int32, _ what: String)
  throws(TinfError) -> [String]
{
  guard count >= 0 && Int(count) <= 1 << 20 else {
    throw TinfError(.invalidArgument, "tinf_model_subgraph: \(what) count \(count) out of range 0...2^20")
  }
  guard count > 0 else { return [] }
  guard let names else { throw TinfError(.invalidArgument, "tinf_model_subgraph: \(what) names are NULL") }
  var out: [String] = []
  out.reserveCapacity(Int(count))
  for i in 0..<Int(count) {
    guard let p = names[i] else { throw TinfError(.invalidArgument, "tinf_model_subgraph: \(what) name \(i) is NULL") }
    out.append(String(cString: p))
  }
  return out
}

@c @implementation
public func tinf_model_subgraph(
  _ model: OpaquePointer?, _ inputNames: UnsafePointer<UnsafePointer<CChar>?>?, _ nInputs: Int32,
  _ outputNames: UnsafePointer<UnsafePointer<CChar>?>?, _ nOutputs: Int32, _ flags: UInt32,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let m = modelHandle(model) else { return nullArg("tinf_model_subgraph", "model") }
  guard let out else { return nullArg("tinf_model_subgraph", "out_model") }
  guard flags & ~subgraphFlagsKnown == 0 else {
    return fail(.invalidArgument, "tinf_model_subgraph: unknown flags \(flags)")
  }
  guard nOutputs >= 1 else { return fail(.invalidArgument, "tinf_model_subgraph: n_outputs must be >= 1, got \(nOutputs)") }
  return status { () throws(TinfError) in
    let ins = try names(inputNames, nInputs, "input")
    let outs = try names(outputNames, nOutputs, "output")
    let sub = try m.model.subgraph(inputs: ins, outputs: outs, addGraphInputs: flags & subgraphAddGraphInputs != 0)
    out.pointee = retain(ModelHandle(sub))
  }
}

@c @implementation
public func tinf_hash64(
  _ data: UnsafeRawPointer?, _ size: Int, _ seed: UInt64, _ out: UnsafeMutablePointer<UInt64>?
) -> tinf_status {
  guard let out else { return nullArg("tinf_hash64", "out_hash") }
  guard data != nil || size == 0 else { return nullArg("tinf_hash64", "data") }
  out.pointee = ti_hash64(data, size, seed)
  return ok()
}

@c @implementation
public func tinf_model_serialize(
  _ model: OpaquePointer?, _ dst: UnsafeMutableRawPointer?, _ capacity: Int, _ outSize: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let m = modelHandle(model) else { return nullArg("tinf_model_serialize", "model") }
  guard let outSize else { return nullArg("tinf_model_serialize", "out_size") }
  guard dst != nil || capacity == 0 else { return nullArg("tinf_model_serialize", "dst") }
  do throws(TinfError) {
    let bytes = try m.model.fileBytes()
    outSize.pointee = bytes.count
    guard let dst else { return ok() }
    guard capacity >= bytes.count else {
      return fail(.invalidArgument, "tinf_model_serialize: capacity \(capacity) is less than the \(bytes.count) bytes of the file")
    }
    bytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    return ok()
  } catch {
    return fail(error)
  }
}
