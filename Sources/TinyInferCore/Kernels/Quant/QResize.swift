import TinyInferShims

/// int8 ResizeBilinear: TFLite's `reference_ops::ResizeBilinearInteger`
/// (resize_bilinear.h, the int8 overload), bit for bit. The output keeps
/// the input's quantization parameters (the reference interpolates the raw
/// int8 values and ignores them; a file declaring other ones is refused).
///
/// Coordinates in 10-bit fixed point: `scale = (1024 in + out / 2) / out`
/// (align_corners with out > 1: `(1024 (in - 1) + (out - 1) / 2) / (out - 1)`),
/// integer divisions; per output row or column `v = o scale` (half pixel
/// centers: `o scale + scale / 2 - 512`, which can be negative near 0),
/// `lower = max(v / 1024, 0)` (C division, toward zero), `upper =
/// min((v + 1023) / 1024, in - 1)`, weight `w = v - 1024 lower` (negative
/// where v is: the reference then extrapolates from the one row it reads,
/// as lower = upper = 0 there, which gives that row's value). The result
/// is the sum of the four products `x (1024 - wy)(1024 - wx)`, ..., rounded
/// half away from zero to `/ 2^20`. The sum is separable and exact in int32
/// (|h| < 2^19 after the horizontal pass, |v| < 2^30 after the vertical),
/// so it runs as two passes of the level's C kernels (`bilinear_h`,
/// `bilinear_v` of ti_q8_kernels); a thread keeps the horizontal passes of
/// the last two input rows, which the next output rows usually read again.
enum QResizeKernel {
  /// (lower, upper, weight) of output coordinate `o`, TFLite's integer
  /// ComputeInterpolationValues, with `lower` clamped to `input - 1`: for
  /// large upsampling ratios (8 -> 129 or more rows, 1 -> 55) the rounded-up
  /// 10-bit scale takes the reference's `lower` to `input` on the last
  /// outputs, a read past the row there (undefined); clamped, lower = upper
  /// and the weights sum to 1024, which gives the edge value.
  static func interpolation(_ o: Int, scale10: Int, _ input: Int, halfPixel: Bool) -> (Int, Int, Int32) {
    let v = halfPixel ? o &* scale10 &+ scale10 / 2 &- 512 : o &* scale10
    let lower = min(max(v / 1024, 0), input &- 1)
    let upper = max(min((v &+ 1023) / 1024, input &- 1), 0)
    return (lower, upper, Int32(truncatingIfNeeded: v &- 1024 &* lower))
  }

  /// TFLite's 10-bit scale (integer division, rounding half up).
  static func scale10(_ input: Int, _ output: Int, alignCorners: Bool) -> Int {
    if alignCorners && output > 1 { return (1024 &* (input &- 1) &+ (output &- 1) / 2) / (output &- 1) }
    return (1024 &* input &+ output / 2) / output
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("ResizeBilinear: missing input") }
    let p = try ResizeKernel.params(ctx.node)
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    try QCheck.outputKeeps(xq, yq, ctx.node.op.name)
    let (n, h, w, c) = (xd.shape[0], xd.shape[1], xd.shape[2], xd.shape[3])
    let (oh, ow) = (p.oh, p.ow)
    // The column offsets are int32 in the C kernel: refuse what would not fit.
    guard w &* c < Int(Int32.max) else {
      throw .unsupported("int8 ResizeBilinear: input rows of \(w &* c) values are too long")
    }
    let sy = scale10(h, oh, alignCorners: p.alignCorners)
    let sx = scale10(w, ow, alignCorners: p.alignCorners)
    var y0 = [Int](repeating: 0, count: oh)
    var y1 = [Int](repeating: 0, count: oh)
    var wy = [Int32](repeating: 0, count: oh)
    for o in 0..<oh { (y0[o], y1[o], wy[o]) = interpolation(o, scale10: sy, h, halfPixel: p.halfPixelCenters) }
    var xs = [Int32](repeating: 0, count: 3 &* ow)  // x0 offsets, x1 offsets, weights
    for o in 0..<ow {
      let (lo, hi, wgt) = interpolation(o, scale10: sx, w, halfPixel: p.halfPixelCenters)
      xs[o] = Int32(lo &* c)
      xs[ow &+ o] = Int32(hi &* c)
      xs[2 &* ow &+ o] = wgt
    }
    let cols = try QBuffer(int32: xs)
    let yLo = IntTable(y0)
    let yHi = IntTable(y1)
    let yW = try QBuffer(int32: wy)
    let pool = ctx.pool
    let rowLen = ow &* c
    // Per thread: two horizontal rows of int32.
    let scratch = try QBuffer(bytes: pool.threads &* 2 &* rowLen &* 4)
    let kernels = ti_q8_kernels_get().pointee
    let hPass = kernels.bilinear_h
    let vPass = kernels.bilinear_v
    let x = ctx.input(0, Int8.self)
    let y = ctx.output(0, Int8.self)
    let rows = n &* oh
    let minChunk = minChunkFor(perItem: rowLen &* 4)
    return { () throws(TinfError) in
      withExtendedLifetime((cols, yW, scratch)) {
        let x0 = UnsafePointer(cols.int32)
        let x1 = x0 + ow
        let wx = x0 + 2 &* ow
        forEachChunk(pool, rows, minChunk: minChunk) { t, range in
          let hb0 = scratch.int32 + 2 &* t &* rowLen
          let hb1 = hb0 + rowLen
          // The input row (b * h + iy) each buffer holds, -1 for none.
          var held0 = -1
          var held1 = -1
          for row in range {
            let b = row / oh
            let oy = row &- b &* oh
            let r0 = b &* h &+ yLo.base[oy]
            let r1 = b &* h &+ yHi.base[oy]
            // Row r's pass: reused where a buffer holds it, else computed into
            // buffer `into` (0 or 1).
            func pass(_ r: Int, into: Int) -> UnsafeMutablePointer<Int32> {
              if held0 == r { return hb0 }
              if held1 == r { return hb1 }
              let buf = into == 0 ? hb0 : hb1
              hPass(x + r &* w &* c, buf, c, ow, x0, x1, wx)
              if into == 0 { held0 = r } else { held1 = r }
              return buf
            }
            // Row r0 into the buffer not holding r1; row r1 into the one h0 is not.
            let h0 = pass(r0, into: held0 != r1 ? 0 : 1)
            let h1 = r1 == r0 ? h0 : pass(r1, into: h0 == hb0 ? 1 : 0)
            vPass(UnsafePointer(h0), UnsafePointer(h1), y + row &* rowLen, rowLen, yW.int32[oy])
          }
        }
      }
    }
  }
}
