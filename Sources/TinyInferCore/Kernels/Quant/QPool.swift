/// int8 MaxPool2D and AveragePool2D (TFLite's reference integer pooling):
/// the output keeps the input's quantization parameters. Max: the largest
/// int8 value of the real cells of the window. Average: the int32 sum of the
/// raw int8 values of the real cells divided by their count, rounded half
/// away from zero. Both clamp to the fused activation's quantized range.
enum QPoolKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try PoolKernel.infer(node, inputs, int8: true)
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let g = try PoolGeometry(ctx)
    let xq = try QCheck.perTensor(ctx.inputs[0]!, "input")
    let yq = try QCheck.output(ctx)
    guard xq.zeroPoint == yq.zeroPoint, (xq.scale - yq.scale).magnitude <= 1e-6 * max(xq.scale, yq.scale) else {
      throw .unsupported(
        "int8 \(ctx.node.op.name) keeps the input's quantization (scale \(xq.scale), zero point \(xq.zeroPoint)); "
          + "the output declares scale \(yq.scale), zero point \(yq.zeroPoint)")
    }
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let (x, y) = (ctx.input(0, Int8.self), ctx.output(0, Int8.self))
    if ctx.node.op == .maxPool2D {
      let (lo8, hi8) = (Int8(truncatingIfNeeded: max(lo, -128)), Int8(truncatingIfNeeded: min(hi, 127)))
      return g.driver(x: x, y: y, pool: ctx.pool, Max(c: g.c, lo: lo8, hi: hi8))
    }
    let sums = try QBuffer(bytes: ctx.pool.threads &* g.c &* 4)
    return g.driver(
      x: x, y: y, pool: ctx.pool, Average(c: g.c, sums: sums, floatDivide: g.kh &* g.kw <= 4096, lo: lo, hi: hi))
  }

  /// The int8 max of the window's real cells.
  struct Max: PoolWindow {
    let c: Int
    let lo: Int8, hi: Int8

    @inline(__always) func begin(_ y: UnsafeMutablePointer<Int8>, chunk: Int) {
      y.update(repeating: Int8.min, count: c)
    }
    @inline(__always) func add(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, chunk: Int) {
      for ch in 0..<c where x[ch] > y[ch] { y[ch] = x[ch] }
    }
    @inline(__always) func finish(_ y: UnsafeMutablePointer<Int8>, cells: Int, chunk: Int) {
      for ch in 0..<c { y[ch] = min(max(y[ch], lo), hi) }
    }
  }

  /// The int8 average: int32 sums in per-thread scratch, divided by the
  /// number of real cells, rounded half away from zero (`averageRow` in
  /// float where that is exact).
  struct Average: PoolWindow {
    let c: Int
    let sums: QBuffer
    let floatDivide: Bool  // see averageRow
    let lo: Int32, hi: Int32

    @inline(__always) func begin(_ y: UnsafeMutablePointer<Int8>, chunk: Int) {
      (sums.int32 + chunk &* c).update(repeating: 0, count: c)
    }
    @inline(__always) func add(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, chunk: Int) {
      let acc = sums.int32 + chunk &* c
      for ch in 0..<c { acc[ch] &+= Int32(x[ch]) }
    }
    @inline(__always) func finish(_ y: UnsafeMutablePointer<Int8>, cells: Int, chunk: Int) {
      let acc = sums.int32 + chunk &* c
      let count = Int32(truncatingIfNeeded: cells)
      if floatDivide {
        QPoolKernel.averageRow(acc, count, lo, hi, y, c)
        return
      }
      let half = count / 2
      for ch in 0..<c {
        let s = acc[ch]
        let v = s > 0 ? (s &+ half) / count : (s &- half) / count
        y[ch] = Int8(truncatingIfNeeded: min(max(v, lo), hi))
      }
    }
  }
}

extension QPoolKernel {
  /// y[i] = clamp(s[i] / count rounded half away from zero) for i < n, as
  /// the integer code `(s + count/2) / count` (s > 0; `(s - count/2) / count`
  /// otherwise, C division) computes it, in float32 so that it vectorizes.
  ///
  /// Exact for count <= 4096: |s| <= 128 count, so a = s +- count/2 and
  /// count are exact floats, and fl(a / count) is within |a / count| 2^-24 <
  /// 2^-16 of the quotient, which is either an integer (then fl(.) is that
  /// integer) or at least 1/count >= 2^-12 from one: truncating fl(.) gives
  /// the C quotient. The truncation: round to nearest with the 1.5 * 2^23
  /// magic number, then one step toward zero where that went past the
  /// quotient.
  @inline(never)
  static func averageRow(
    _ s: UnsafePointer<Int32>, _ count: Int32, _ lo: Int32, _ hi: Int32, _ y: UnsafeMutablePointer<Int8>, _ n: Int
  ) {
    let half = count / 2
    let fc = Float(count)
    let magic: Float = 12_582_912
    let magicBits = Int32(bitPattern: magic.bitPattern)
    for i in 0..<n {
      let v = s[i]
      let f = Float(v > 0 ? v &+ half : v &- half) / fc
      let t = f + magic
      let r = t - magic
      var q = Int32(bitPattern: t.bitPattern) &- magicBits
      q = q &- (f >= 0 && r > f ? 1 : 0)
      q = q &+ (f < 0 && r < f ? 1 : 0)
      y[i] = Int8(truncatingIfNeeded: q < lo ? lo : (q > hi ? hi : q))
    }
  }
}

/// int8 Mean (TFLite's reference QuantizedMeanOrSum): the int32 sum over the
/// reduced dims, `MultiplyByQuantizedMultiplier(sum - zp_x n, M') + zp_y`
/// clamped to int8, where M' folds 1/n into the multiplier of s_x / s_y:
/// with `b = min(floor(log2 n), 32, 31 + shift)`, `M' = (M << b) / n` and
/// `shift' = shift - b`.
enum QMeanKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    let reduced = try MeanKernel.reducedDims(node, x)
    let keep = try node.attrs.int(.keepDims, default: 0, in: 0...1) == 1
    var shape: [Int] = []
    for (i, d) in x.shape.enumerated() {
      if !reduced[i] {
        shape.append(d)
      } else if keep {
        shape.append(1)
      }
    }
    var count = 1
    for (i, d) in x.shape.enumerated() where reduced[i] { count *= d }
    guard count < 1 << 24 else {
      throw .unsupported("int8 Mean over \(count) elements would overflow its int32 sum")
    }
    return [TensorType(.int8, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("Mean: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let reduced = try MeanKernel.reducedDims(ctx.node, xd)
    let layout = ReductionLayout(shape: xd.shape, reduced: reduced)
    let (sizes, reduceCount, outStrides, outCount) = (layout.sizes, layout.reduceCount, layout.outStrides, layout.outCount)
    let (inner, innerReduced, outerGroups, outer) = (layout.inner, layout.innerReduced, layout.outerGroups, layout.outer)
    let sizeTable = IntTable(sizes)
    let strideTable = IntTable(outStrides)
    let sums = try QBuffer(bytes: outCount &* 4)

    // The multiplier with 1/n folded in.
    let base = try FixedPoint.requantization(Double(xq.scale) / Double(yq.scale), "Mean")
    let n = Int64(reduceCount)
    var b = Int32(63 - UInt64(n).leadingZeroBitCount)
    b = min(b, 32)
    b = min(b, 31 &+ base.shift)
    let mult = Int32(truncatingIfNeeded: (Int64(base.multiplier) << Int64(b)) / n)
    let shift = base.shift &- b
    let offset = xq.zeroPoint &* Int32(truncatingIfNeeded: n)
    let yz = yq.zeroPoint
    guard let xp = ctx.inputData[0] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)

    return { () throws(TinfError) in
      let s = sums.int32
      s.update(repeating: 0, count: outCount)
      let sz = sizeTable.base
      let st = strideTable.base
      for t in 0..<outer {
        var rem = t
        var off = 0
        var g = outerGroups &- 1
        while g >= 0 {
          let d = sz[g]
          let q = rem / d
          off &+= (rem &- q &* d) &* st[g]
          rem = q
          g &-= 1
        }
        let xs = x + t &* inner
        if innerReduced {
          s[off] &+= sumInt8(xs, inner)
        } else {
          let so = s + off
          for i in 0..<inner { so[i] &+= Int32(xs[i]) }
        }
      }
      QMeanKernel.requantizeSums(s, offset, mult, shift, yz, y, outCount)
    }
  }

  /// y[i] = clamp(MultiplyByQuantizedMultiplier(s[i] - offset, mult, shift) + yz), 16 at a time.
  @inline(never)
  static func requantizeSums(
    _ s: UnsafePointer<Int32>, _ offset: Int32, _ mult: Int32, _ shift: Int32, _ yz: Int32,
    _ y: UnsafeMutablePointer<Int8>, _ n: Int
  ) {
    let rq = FixedPoint.Requant16(multiplier: mult, shift: shift)
    let off = SIMD16<Int32>(repeating: offset)
    let zy = SIMD16<Int32>(repeating: yz)
    var i = 0
    while i &+ 16 <= n {
      let v = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD16<Int32>.self) &- off
      UnsafeMutableRawPointer(y + i).storeBytes(
        of: clampNarrow(FixedPoint.mul(v, rq) &+ zy, -128, 127), as: SIMD16<Int8>.self)
      i &+= 16
    }
    while i < n {
      y[i] = requantize(s[i] &- offset, mult, shift, yz, -128, 127)
      i &+= 1
    }
  }
}
