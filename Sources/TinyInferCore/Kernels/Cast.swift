/// Cast, Shape and Range (docs/ops.md).
///
/// Cast converts numbers between float32, int8, uint8, int16, int32, int64
/// and bool (attribute `dtype`, a dtype code): integers wrap (two's
/// complement, as numpy's astype and C), float32 to an integer truncates
/// toward zero and saturates at the type's range (NaN gives 0), anything to
/// bool is `x != 0`, bool to a number is 0 or 1. It converts values, not
/// quantized data: quantized inputs are refused (Dequantize/Quantize do that).
enum CastKernel {
  static func target(_ node: Node) throws(TinfError) -> DType {
    let code = try node.attrs.int(.dtype, default: 0, in: 0...255)
    guard let d = DType(rawValue: UInt8(code)), d != .float16 else {
      throw .unsupported("Cast: attribute dtype \(code) is not float32, int8, uint8, int16, int32, int64 or bool")
    }
    return d
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try requirePlainNumbers(x, allowBool: true)
    return [TensorType(try target(node), x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let n = ctx.outputs[0].count
    let s = try movePointer(ctx, 0)
    let d = ctx.outputData[0]
    let to = try target(ctx.node)
    switch ctx.inputs[0]!.dtype {
    case .float32: return fromFloat(s.assumingMemoryBound(to: Float.self), to, d, n)
    case .int8: return fromInt(s.assumingMemoryBound(to: Int8.self), to, d, n)
    case .uint8, .bool: return fromInt(s.assumingMemoryBound(to: UInt8.self), to, d, n)
    case .int16: return fromInt(s.assumingMemoryBound(to: Int16.self), to, d, n)
    case .int32: return fromInt(s.assumingMemoryBound(to: Int32.self), to, d, n)
    case .int64: return fromInt(s.assumingMemoryBound(to: Int64.self), to, d, n)
    case .float16: throw TinfError(.unsupportedDType, "Cast does not take float16")
    }
  }

  static func fromInt<S: FixedWidthInteger>(
    _ x: UnsafePointer<S>, _ to: DType, _ d: UnsafeMutableRawPointer, _ n: Int
  ) -> KernelFn {
    switch to {
    case .float32: return map(x, d, Float.self, n) { Float($0) }
    case .int8: return map(x, d, Int8.self, n) { Int8(truncatingIfNeeded: $0) }
    case .uint8: return map(x, d, UInt8.self, n) { UInt8(truncatingIfNeeded: $0) }
    case .int16: return map(x, d, Int16.self, n) { Int16(truncatingIfNeeded: $0) }
    case .int32: return map(x, d, Int32.self, n) { Int32(truncatingIfNeeded: $0) }
    case .int64: return map(x, d, Int64.self, n) { Int64(truncatingIfNeeded: $0) }
    case .bool, .float16: return map(x, d, UInt8.self, n) { $0 != 0 ? 1 : 0 }
    }
  }

  static func fromFloat(_ x: UnsafePointer<Float>, _ to: DType, _ d: UnsafeMutableRawPointer, _ n: Int) -> KernelFn {
    switch to {
    case .float32: return map(x, d, Float.self, n) { $0 }
    case .int8: return map(x, d, Int8.self, n) { saturating($0) }
    case .uint8: return map(x, d, UInt8.self, n) { saturating($0) }
    case .int16: return map(x, d, Int16.self, n) { saturating($0) }
    case .int32: return map(x, d, Int32.self, n) { saturating($0) }
    case .int64: return map(x, d, Int64.self, n) { saturating($0) }
    case .bool, .float16: return map(x, d, UInt8.self, n) { $0 != 0 ? 1 : 0 }
    }
  }

  /// v truncated toward zero, clamped to T's range; NaN gives 0.
  @inline(__always)
  static func saturating<T: FixedWidthInteger>(_ v: Float) -> T {
    if v != v { return 0 }
    if v <= Float(T.min) { return T.min }
    if v >= Float(T.max) { return T.max }  // Float(T.max) rounds up to a power of two
    return T(v)
  }

  @inline(__always)
  static func map<S, D>(
    _ x: UnsafePointer<S>, _ d: UnsafeMutableRawPointer, _: D.Type, _ n: Int, _ f: @escaping (S) -> D
  ) -> KernelFn {
    let y = d.assumingMemoryBound(to: D.self)
    return { () throws(TinfError) in for i in 0..<n { y[i] = f(x[i]) } }
  }
}

/// Shape: the input's dims as int64 (default) or int32 (attribute `dtype`);
/// the input's data is not read.
enum ShapeKernel {
  static func target(_ node: Node) throws(TinfError) -> DType {
    let code = try node.attrs.int(.dtype, default: Int(DType.int64.rawValue), in: 0...255)
    guard code == Int(DType.int32.rawValue) || code == Int(DType.int64.rawValue) else {
      throw .unsupported("Shape: attribute dtype \(code) is not int32 (5) or int64 (6)")
    }
    return code == Int(DType.int32.rawValue) ? .int32 : .int64
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    return [TensorType(try target(node), [max(x.shape.count, 1)])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    var dims = ctx.inputs[0]!.shape
    if dims.isEmpty { dims = [1] }  // a scalar: rank 0 is shown as [1]
    let d = ctx.outputData[0]
    if try target(ctx.node) == .int32 {
      let y = d.assumingMemoryBound(to: Int32.self)
      let v = dims.map { Int32(truncatingIfNeeded: $0) }
      return { () throws(TinfError) in for i in 0..<v.count { y[i] = v[i] } }
    }
    let y = d.assumingMemoryBound(to: Int64.self)
    let v = dims.map { Int64($0) }
    return { () throws(TinfError) in for i in 0..<v.count { y[i] = v[i] } }
  }
}

/// Range: no inputs; attribute `value` = [start, limit, delta] as ints
/// (output int32 or int64, attribute `dtype`, default int64) or floats
/// (float32). y[i] = start + i * delta for i < ceil((limit - start) /
/// delta) (computed in Double for floats); delta 0 or an empty range is
/// refused at load.
enum RangeKernel {
  enum Values {
    case ints(Int64, Int64, Int64, DType)
    case floats(Double, Double, Double)
  }

  static func values(_ node: Node) throws(TinfError) -> (Values, count: Int) {
    let limit = 1 << 30
    switch node.attrs[.value] {
    case .ints(let v)?:
      guard v.count == 3 else { throw .unsupported("Range: value must be [start, limit, delta]") }
      let code = try node.attrs.int(.dtype, default: Int(DType.int64.rawValue), in: 0...255)
      guard code == Int(DType.int32.rawValue) || code == Int(DType.int64.rawValue) else {
        throw .unsupported("Range: integer values make int32 (5) or int64 (6) output, not dtype \(code)")
      }
      let (s, l, d) = (v[0], v[1], v[2])
      guard d != 0 else { throw .unsupported("Range: delta is 0") }
      let span = (Double(l) - Double(s)) / Double(d)
      guard span > 0 && span <= Double(limit) else { throw .shape("Range(\(s), \(l), \(d)) has no elements or too many") }
      // Exact integer ceiling division (span is positive, so l - s and d share a sign).
      let (diff, overflow) = l.subtractingReportingOverflow(s)
      guard !overflow else { throw .unsupported("Range: limit - start overflows int64") }
      let (q, r) = (diff / d, diff % d)
      let count = Int(q) &+ (r != 0 ? 1 : 0)
      let type: DType = code == Int(DType.int32.rawValue) ? .int32 : .int64
      if type == .int32 {
        let last = s &+ Int64(count &- 1) &* d
        guard s >= Int64(Int32.min) && s <= Int64(Int32.max) && last >= Int64(Int32.min) && last <= Int64(Int32.max) else {
          throw .unsupported("Range: values exceed int32")
        }
      }
      return (.ints(s, l, d, type), count)
    case .floats(let v)?:
      guard v.count == 3 else { throw .unsupported("Range: value must be [start, limit, delta]") }
      let (s, l, d) = (Double(v[0]), Double(v[1]), Double(v[2]))
      guard d != 0 && d == d else { throw .unsupported("Range: delta is 0 or NaN") }
      let span = ((l - s) / d).rounded(.up)
      guard span >= 1 && span <= Double(limit) else { throw .shape("Range(\(s), \(l), \(d)) has no elements or too many") }
      return (.floats(s, l, d), Int(span))
    default:
      throw .unsupported("Range needs attribute value = [start, limit, delta] (ints or floats)")
    }
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 0...0)
    let (v, count) = try values(node)
    switch v {
    case .ints(_, _, _, let t): return [TensorType(t, [count])]
    case .floats: return [TensorType(.float32, [count])]
    }
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let (v, count) = try values(ctx.node)
    let d = ctx.outputData[0]
    switch v {
    case .ints(let s, _, let step, let t):
      if t == .int32 {
        let y = d.assumingMemoryBound(to: Int32.self)
        return { () throws(TinfError) in
          for i in 0..<count { y[i] = Int32(truncatingIfNeeded: s &+ Int64(i) &* step) }
        }
      }
      let y = d.assumingMemoryBound(to: Int64.self)
      return { () throws(TinfError) in for i in 0..<count { y[i] = s &+ Int64(i) &* step } }
    case .floats(let s, _, let step):
      let y = d.assumingMemoryBound(to: Float.self)
      return { () throws(TinfError) in for i in 0..<count { y[i] = Float(s + Double(i) * step) } }
    }
  }
}
