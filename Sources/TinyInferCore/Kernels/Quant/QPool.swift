import TinyInferShims

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
    try QCheck.outputKeeps(xq, yq, ctx.node.op.name)
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let (x, y) = (ctx.input(0, Int8.self), ctx.output(0, Int8.self))
    if ctx.node.op == .maxPool2D {
      // One C call per output row (ti_q8_kernels max_pool_row), a pixel's
      // channels kept in registers over its window, as the float kernel.
      let rowKernel = ti_q8_kernels_get().pointee.max_pool_row
      let (lo8, hi8) = (max(lo, -128), min(hi, 127))
      let (h, w, c, kh, kw, ow, padL, sw) = (g.h, g.w, g.c, g.kh, g.kw, g.ow, g.padL, g.sw)
      return g.rowDriver(x: x, y: y, pool: ctx.pool) { yr, xi, iy0 in
        rowKernel(yr, xi, c, h, w, kh, kw, iy0, padL, sw, ow, lo8, hi8)
      }
    }
    let sums = try QBuffer(bytes: ctx.pool.threads &* g.c &* 4)
    return g.driver(
      x: x, y: y, pool: ctx.pool, Average(c: g.c, sums: sums, floatDivide: g.kh &* g.kw <= 4096, lo: lo, hi: hi))
  }

  /// The int8 average: int32 sums in per-thread scratch, divided by the
  /// number of real cells, rounded half away from zero (`averageRow` in
  /// float where that is exact).
  struct Average: PoolWindow {
    let c: Int
    let sums: QBuffer
    let floatDivide: Bool  // see averageRow
    let lo: Int32, hi: Int32
    /// The level's C kernel of `averageRow` (ti_q8_kernels), fetched at bind.
    let vectorRow = ti_q8_kernels_get().pointee.average_row
    let accumulate = ti_q8_kernels_get().pointee.accumulate

    @inline(__always) func begin(_ y: UnsafeMutablePointer<Int8>, chunk: Int) {
      (sums.int32 + chunk &* c).update(repeating: 0, count: c)
    }
    @inline(__always) func add(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, chunk: Int) {
      let acc = sums.int32 + chunk &* c
      let done = accumulate(acc, x, c)
      for ch in done..<c { acc[ch] &+= Int32(x[ch]) }
    }
    @inline(__always) func finish(_ y: UnsafeMutablePointer<Int8>, cells: Int, chunk: Int) {
      let acc = sums.int32 + chunk &* c
      let count = Int32(truncatingIfNeeded: cells)
      if floatDivide {
        // Whole vectors in the C kernel, the rest here.
        let done = vectorRow(acc, count, lo, hi, y, c)
        QPoolKernel.averageRow(acc + done, count, lo, hi, y + done, c &- done)
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
