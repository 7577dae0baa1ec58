import TinyInferShims

/// int8 Mean and ReduceMax, on the reduction driver of Kernels/Reduce.swift
/// (same axes, keep_dims and output shape as the float32 kernels).
///
/// Mean (TFLite's reference QuantizedMeanOrSum): the int32 sum over the
/// reduced dims, `MultiplyByQuantizedMultiplier(sum - zp_x n, M') + zp_y`
/// clamped to int8, where M' folds 1/n into the multiplier of s_x / s_y:
/// with `b = min(floor(log2 n), 32, 31 + shift)`, `M' = (M << b) / n` and
/// `shift' = shift - b`.
///
/// ReduceMax (TFLite's REDUCE_MAX): the largest int8 value, exact when the
/// output has the input's parameters (what TFLite's converter writes);
/// otherwise requantized like a Quantize from int8 to int8:
/// `MultiplyByQuantizedMultiplier(max - zp_x, M(s_x / s_y)) + zp_y` clamped
/// (requantization is monotonic, so this is the max of the requantized values).
enum QReduceKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, node.op.traits.inputs)
    let x = try required(inputs, 0, "input")
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    let (shape, count) = try ReduceKernel.outputShape(node, x)
    guard node.op != .mean || count < 1 << 24 else {
      throw .unsupported("int8 Mean over \(count) elements would overflow its int32 sum")
    }
    return [TensorType(.int8, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("\(ctx.node.op.name): missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let reduced = try ReduceKernel.reducedDims(ctx.node, xd)
    let plan = ReductionPlan(shape: xd.shape, reduced: reduced)
    let outCount = plan.outCount
    guard let xp = ctx.inputData[0] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)
    let yz = yq.zeroPoint

    if ctx.node.op == .reduceMax {
      if xq.zeroPoint == yq.zeroPoint && xq.scale == yq.scale {
        return { () throws(TinfError) in plan.run(MaxInt8.self, x, y) }
      }
      let m = try FixedPoint.requantization(Double(xq.scale) / Double(yq.scale), "ReduceMax")
      let maxima = try QBuffer(bytes: outCount)
      let (mult, shift, xz) = (m.multiplier, m.shift, xq.zeroPoint)
      return { () throws(TinfError) in
        let a = maxima.raw.assumingMemoryBound(to: Int8.self)
        plan.run(MaxInt8.self, x, a)
        for i in 0..<outCount { y[i] = requantize(Int32(a[i]) &- xz, mult, shift, yz, -128, 127) }
      }
    }

    // Mean: the multiplier with 1/n folded in.
    let base = try FixedPoint.requantization(Double(xq.scale) / Double(yq.scale), "Mean")
    let n = Int64(plan.reduceCount)
    var b = Int32(63 - UInt64(n).leadingZeroBitCount)
    b = min(b, 32)
    b = min(b, 31 &+ base.shift)
    let mult = Int32(truncatingIfNeeded: (Int64(base.multiplier) << Int64(b)) / n)
    let shift = base.shift &- b
    let offset = xq.zeroPoint &* Int32(truncatingIfNeeded: n)
    let sums = try QBuffer(bytes: outCount &* 4)
    if let (outer, count, inner) = rowsOfRows(xd.shape, reduced) {
      // Rows of `inner` values summed with the level's C kernel (as the
      // spatial Mean of an NHWC tensor: H * W rows of C channels).
      let accumulate = ti_q8_kernels_get().pointee.accumulate
      return { () throws(TinfError) in
        let s = sums.int32
        for o in 0..<outer {
          let so = s + o &* inner
          so.update(repeating: 0, count: inner)
          for r in 0..<count {
            let xr = x + (o &* count &+ r) &* inner
            var i = accumulate(so, xr, inner)
            while i < inner {
              so[i] &+= Int32(xr[i])
              i &+= 1
            }
          }
        }
        QReduceKernel.requantizeSums(s, offset, mult, shift, yz, y, outCount)
      }
    }
    return { () throws(TinfError) in
      let s = sums.int32
      plan.run(SumInt8.self, x, s)
      QReduceKernel.requantizeSums(s, offset, mult, shift, yz, y, outCount)
    }
  }

  /// A reduction over one block of consecutive dims (dims of size 1
  /// aside) that leaves an inner block of at least 16 values: the input as
  /// [outer, count, inner], reduced along `count`; nil otherwise.
  static func rowsOfRows(_ shape: [Int], _ reduced: [Bool]) -> (Int, Int, Int)? {
    var outer = 1
    var count = 1
    var inner = 1
    var stage = 0  // 0: before the reduced block, 1: in it, 2: after it
    for (i, d) in shape.enumerated() where d > 1 {
      if reduced[i] {
        if stage == 2 { return nil }
        stage = 1
        count &*= d
      } else if stage == 0 {
        outer &*= d
      } else {
        stage = 2
        inner &*= d
      }
    }
    return stage == 2 && inner >= 16 ? (outer, count, inner) : nil
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

/// int8 sum in int32 (Mean).
enum SumInt8: ReduceStep {
  static var identity: Int32 { 0 }
  @inline(__always) static func fold(_ a: Int32, _ x: Int8) -> Int32 { a &+ Int32(x) }
  @inline(__always) static func foldRun(_ a: Int32, _ x: UnsafePointer<Int8>, _ n: Int) -> Int32 { a &+ sumInt8(x, n) }
}

/// int8 maximum (ReduceMax).
enum MaxInt8: ReduceStep {
  static var identity: Int8 { -128 }
  @inline(__always) static func fold(_ a: Int8, _ x: Int8) -> Int8 { x > a ? x : a }
  @inline(__always) static func foldRun(_ a: Int8, _ x: UnsafePointer<Int8>, _ n: Int) -> Int8 {
    var m = a
    for i in 0..<n { m = x[i] > m ? x[i] : m }
    return m
  }
}
