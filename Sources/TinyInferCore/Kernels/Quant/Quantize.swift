import TinyInferShims

/// Quantize and Dequantize (docs/ops.md, docs/quantization.md).
///
/// Quantize: float32 -> int8/uint8/int16 (attribute `dtype`, required),
/// `q = clamp(round(x / scale) + zero_point)` with the division in float32
/// and, per `mode`, 0: rounding half away from zero (TFLite's
/// AffineQuantize), 1: half to even (ONNX QuantizeLinear). Values beyond the
/// range saturate; NaN gives the zero point. Per tensor or per axis. The
/// output's parameters are those its tensor entry declares.
/// An int8/uint8/int16 input is requantized as TFLite's Quantize does:
/// `clamp(MultiplyByQuantizedMultiplier(q - zp_in, s_in / s_out) + zp_out)`
/// (per tensor only; int8 to int8 through a 256-entry table of it).
///
/// Dequantize: int8/uint8/int16/int32 -> float32, `(q - zero_point) * scale`
/// (per tensor: computed in double and rounded once, as TFLite's Dequantize;
/// per axis: in float32, as its PerChannelDequantize), or float16 -> float32.
enum QuantizeKernel {
  /// The integer range of a quantized dtype.
  static func range(_ t: DType) -> (lo: Int32, hi: Int32)? {
    switch t {
    case .int8: return (-128, 127)
    case .uint8: return (0, 255)
    case .int16: return (-32768, 32767)
    case .int32: return (Int32.min, Int32.max)
    default: return nil
    }
  }

  /// Checks a tensor's quantization against its shape and dtype; returns the
  /// normalized axis (nil for per tensor).
  static func checkQuant(_ q: Quantization, _ t: TensorDesc, _ what: String) throws(TinfError) -> Int? {
    guard !q.scales.isEmpty, q.zeroPoints.count == q.scales.count else {
      throw TinfError(
        .badFormat, "\(what) '\(t.name)' has \(q.scales.count) scales and \(q.zeroPoints.count) zero points")
    }
    for s in q.scales where !(s.isFinite && s > 0) {
      throw TinfError(.badFormat, "\(what) '\(t.name)' has the scale \(s)")
    }
    if let (lo, hi) = range(t.dtype) {
      for z in q.zeroPoints where z < lo || z > hi {
        throw TinfError(.badFormat, "\(what) '\(t.name)' has the zero point \(z), outside \(t.dtype.name)")
      }
    }
    if q.scales.count == 1 { return nil }
    guard let axis = q.axis, axis >= 0, axis < t.shape.count, t.shape[axis] == q.scales.count else {
      throw TinfError(
        .badFormat,
        "\(what) '\(t.name)' \(describe(t.shape)) has \(q.scales.count) scales along axis \(q.axis ?? -1); "
          + "per-axis parameters need one per element of that dim")
    }
    return axis
  }

  static func outputType(_ node: Node) throws(TinfError) -> DType {
    guard node.attrs[.dtype] != nil else {
      throw .unsupported("Quantize needs the attribute dtype (3 int8, 4 uint8, 7 int16)")
    }
    let code = try node.attrs.int(.dtype, default: 0, in: 0...255)
    switch code {
    case 3: return .int8
    case 4: return .uint8
    case 7: return .int16
    default: throw .unsupported("Quantize: attribute dtype = \(code); supported: 3 int8, 4 uint8, 7 int16")
    }
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    if node.op == .dequantize {
      switch x.dtype {
      case .float16:
        guard x.quant == nil else {
          throw .unsupported("Dequantize of float16 '\(x.name)' takes no quantization parameters")
        }
      case .int8, .uint8, .int16, .int32:
        guard let q = x.quant else {
          throw TinfError(.badFormat, "input '\(x.name)' is \(x.dtype.name) but has no quantization parameters")
        }
        _ = try checkQuant(q, x, "input")
      default:
        throw TinfError(
          .unsupportedDType, "Dequantize takes int8, uint8, int16, int32 or float16; input '\(x.name)' is \(x.dtype.name)")
      }
      return [TensorType(.float32, x.shape)]
    }
    let dtype = try outputType(node)
    let mode = try node.attrs.int(.mode, default: 0, in: 0...1)
    switch x.dtype {
    case .float32: break
    case .int8, .uint8, .int16:
      guard mode == 0 else {
        throw .unsupported("Quantize mode 1 (half to even) applies to a float input; requantization rounds as TFLite")
      }
      guard let q = x.quant else {
        throw TinfError(.badFormat, "input '\(x.name)' is \(x.dtype.name) but has no quantization parameters")
      }
      guard try checkQuant(q, x, "input") == nil else {
        throw .unsupported("requantizing '\(x.name)': per-axis input parameters are not supported")
      }
    default:
      throw TinfError(
        .unsupportedDType, "Quantize takes float32 (or int8, uint8, int16 to requantize); input '\(x.name)' is \(x.dtype.name)")
    }
    return [TensorType(dtype, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let x = ctx.inputs[0], let xp = ctx.inputData[0] else { throw .format("missing input") }
    let src = UnsafeRawPointer(xp)
    let dst = ctx.outputData[0]
    let n = x.count
    if ctx.node.op == .dequantize {
      return try bindDequantize(x, src, dst.assumingMemoryBound(to: Float.self), n)
    }
    let out = ctx.outputs[0]
    guard let q = out.quant else {
      throw TinfError(
        .badFormat, "Quantize output '\(out.name)' has no quantization parameters; the file must declare them")
    }
    let axis = try checkQuant(q, out, "output")
    guard let (lo, hi) = range(out.dtype) else { throw TinfError(.internal, "Quantize output dtype") }

    if x.dtype != .float32 {
      guard axis == nil else { throw .unsupported("requantizing to per-axis parameters is not supported") }
      guard let xq = x.quant else { throw TinfError(.badFormat, "input has no quantization parameters") }
      let m = try FixedPoint.requantization(Double(xq.scales[0]) / Double(q.scales[0]), "Quantize")
      let zin = xq.zeroPoints[0]
      let zout = q.zeroPoints[0]
      @inline(__always) func requant(_ v: Int32) -> Int32 { min(max(FixedPoint.mul(v &- zin, m) &+ zout, lo), hi) }
      if x.dtype == .int8 && out.dtype == .int8 {
        // int8 to int8 (a requantization between two ops' parameters): a
        // 256-entry table of the same arithmetic, looked up (lookup256).
        var table = [Int8](repeating: 0, count: 256)
        for v in -128...127 { table[v + 128] = Int8(truncatingIfNeeded: requant(Int32(v))) }
        let lut = try QBuffer(int8: table)
        let (xs, ys) = (src.assumingMemoryBound(to: Int8.self), dst.assumingMemoryBound(to: Int8.self))
        return { () throws(TinfError) in lookup256(xs, ys, UnsafePointer(lut.int8), n) }
      }
      switch (x.dtype, out.dtype) {
      case (.int8, _): return convertInts(Int8.self, src, out.dtype, dst, n, requant)
      case (.uint8, _): return convertInts(UInt8.self, src, out.dtype, dst, n, requant)
      default: return convertInts(Int16.self, src, out.dtype, dst, n, requant)
      }
    }

    // float32 -> integers, per slice of the quantized axis.
    let f = src.assumingMemoryBound(to: Float.self)
    let halfEven = try ctx.attrs.int(.mode, default: 0, in: 0...1) == 1
    var outer = 1
    var inner = n
    var channels = 1
    if let a = axis {
      channels = out.shape[a]
      for d in 0..<a { outer &*= out.shape[d] }
      inner = n / (outer &* channels)
    }
    let scales = q.scales
    let zps = q.zeroPoints
    let pool = ctx.pool
    // int8 outputs: the level's C kernel (ti_q8_kernels) does the whole
    // vectors, quantizeRun the rest.
    let vectorKernel = ti_q8_kernels_get().pointee.quantize_f32
    @inline(__always) func run<T: FixedWidthInteger>(_: T.Type, vectors: Bool) -> KernelFn {
      let y = dst.assumingMemoryBound(to: T.self)
      return { () throws(TinfError) in
        pool.parallelRanges(outer &* channels, minChunk: max(1, (1 << 15) / max(inner, 1))) { r in
          for row in r {
            let c = row % channels
            let s = scales[c]
            let zp = zps[c]
            let base = row &* inner
            let done =
              vectors
              ? vectorKernel(
                f + base, UnsafeMutableRawPointer(y + base).assumingMemoryBound(to: Int8.self), inner, s, zp, lo, hi,
                halfEven ? 1 : 0) : 0
            QuantizeKernel.quantizeRun(f + (base &+ done), y + (base &+ done), inner &- done, s, zp, lo, hi, halfEven)
          }
        }
      }
    }
    switch out.dtype {
    case .int8: return run(Int8.self, vectors: true)
    case .uint8: return run(UInt8.self, vectors: false)
    default: return run(Int16.self, vectors: false)
    }
  }

  /// One float quantized: round(v / scale) + zp, saturated to [lo, hi]; NaN gives zp.
  @inline(__always)
  static func quantize(_ v: Float, _ scale: Float, _ zp: Int32, _ lo: Int32, _ hi: Int32, _ halfEven: Bool) -> Int32 {
    let d = v / scale
    var r = halfEven ? d.rounded(.toNearestOrEven) : d.rounded(.toNearestOrAwayFromZero)
    if r.isNaN { r = 0 }
    r = min(max(r, -131072), 131072)  // beyond any 16-bit range plus zero point: saturates below
    return min(max(Int32(r) &+ zp, lo), hi)
  }

  /// y[i] = quantize(x[i], ...) for i < n: the same arithmetic as
  /// `quantize`, written with compares, selects and bit operations only so
  /// that LLVM vectorizes it (16 lanes with AVX-512, checked with objdump;
  /// `rounded(.toNearestOrAwayFromZero)` is a call to roundf per element).
  ///
  /// d = x / scale, NaN -> 0, clamped to +-131072 (rounding commutes with a
  /// clamp to integers). Adding 1.5 * 2^23 rounds |d| <= 2^17 to an integer,
  /// half to even, in the low bits of the sum (the float spacing there is
  /// 1, and the magic number is even). Half away from zero then moves a
  /// tie d - t = +-1/2 (exact) one step outward when the even rounding went
  /// inward. Then + zp and the clamp to [lo, hi].
  @inline(never)
  static func quantizeRun<T: FixedWidthInteger>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<T>, _ n: Int, _ scale: Float, _ zp: Int32, _ lo: Int32,
    _ hi: Int32, _ halfEven: Bool
  ) {
    let magic: Float = 12_582_912
    let magicBits = Int32(bitPattern: magic.bitPattern)
    @inline(__always) func even(_ v: Float) -> (d: Float, t: Float) {
      var d = v / scale
      d = d != d ? 0 : d
      d = d < -131072 ? -131072 : d
      d = d > 131072 ? 131072 : d
      return (d, d + magic)
    }
    @inline(__always) func store(_ i: Int, _ q: Int32) {
      let v = q &+ zp
      y[i] = T(truncatingIfNeeded: v < lo ? lo : (v > hi ? hi : v))
    }
    if halfEven {
      for i in 0..<n {
        let (_, t) = even(x[i])
        store(i, Int32(bitPattern: t.bitPattern) &- magicBits)
      }
    } else {
      for i in 0..<n {
        let (d, t) = even(x[i])
        let diff = d - (t - magic)
        var q = Int32(bitPattern: t.bitPattern) &- magicBits
        q = q &+ (diff == 0.5 && d > 0 ? 1 : 0)
        q = q &- (diff == -0.5 && d < 0 ? 1 : 0)
        store(i, q)
      }
    }
  }

  /// A kernel converting n integers of type S to `outType` through `f`.
  static func convertInts<S: FixedWidthInteger>(
    _: S.Type, _ src: UnsafeRawPointer, _ outType: DType, _ dst: UnsafeMutableRawPointer, _ n: Int,
    _ f: @escaping (Int32) -> Int32
  ) -> KernelFn {
    let s = src.assumingMemoryBound(to: S.self)
    @inline(__always) func make<T: FixedWidthInteger>(_: T.Type) -> KernelFn {
      let y = dst.assumingMemoryBound(to: T.self)
      return { () throws(TinfError) in
        for i in 0..<n { y[i] = T(truncatingIfNeeded: f(Int32(truncatingIfNeeded: s[i]))) }
      }
    }
    switch outType {
    case .int8: return make(Int8.self)
    case .uint8: return make(UInt8.self)
    default: return make(Int16.self)
    }
  }

  static func bindDequantize(_ x: TensorDesc, _ src: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int)
    throws(TinfError) -> KernelFn
  {
    if x.dtype == .float16 {
      let h = src.assumingMemoryBound(to: UInt16.self)
      let convert = ti_f32_kernels_get().pointee.from_f16
      return { () throws(TinfError) in convert(h, y, n) }
    }
    guard let q = x.quant else { throw TinfError(.badFormat, "input has no quantization parameters") }
    let axis = try checkQuant(q, x, "input")
    var outer = 1
    var channels = 1
    var inner = n
    if let a = axis {
      channels = x.shape[a]
      for d in 0..<a { outer &*= x.shape[d] }
      inner = n / (outer &* channels)
    }
    let scales = q.scales
    let zps = q.zeroPoints
    let perAxis = axis != nil
    // Per-tensor int8: the whole vectors in the level's C kernel.
    let vectorKernel = ti_q8_kernels_get().pointee.dequantize
    @inline(__always) func run<T: FixedWidthInteger>(_: T.Type, vectors: Bool = false) -> KernelFn {
      let s = src.assumingMemoryBound(to: T.self)
      if !perAxis {
        let scale = Double(scales[0])
        let zp = Int64(zps[0])
        return { () throws(TinfError) in
          let done =
            vectors ? vectorKernel(UnsafeRawPointer(s).assumingMemoryBound(to: Int8.self), y, n, scale, zps[0]) : 0
          for i in done..<n { y[i] = Float(scale * Double(Int64(s[i]) &- zp)) }
        }
      }
      return { () throws(TinfError) in
        var i = 0
        for _ in 0..<outer {
          for c in 0..<channels {
            let scale = scales[c]
            let zp = Int64(zps[c])
            for _ in 0..<inner {
              y[i] = scale * Float(Int64(s[i]) &- zp)
              i &+= 1
            }
          }
        }
      }
    }
    switch x.dtype {
    case .int8: return run(Int8.self, vectors: true)
    case .uint8: return run(UInt8.self)
    case .int16: return run(Int16.self)
    case .int32: return run(Int32.self)
    default: throw TinfError(.unsupportedDType, "Dequantize: \(x.dtype.name)")
    }
  }
}
