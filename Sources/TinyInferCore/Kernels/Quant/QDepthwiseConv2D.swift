import TinyInferShims

/// int8 DepthwiseConv2D: TFLite's DepthwiseConvPerChannel reference kernel
/// (see QConv.swift for the parameters). Output channel c*M+m reads input
/// channel c; `acc = sum w (x - zp_x) + bias` over the taps inside the image
/// (padding contributes nothing), then per channel
/// `y = clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)`.
///
/// Depth multiplier 1: each output row is one
/// call of the level's C kernel (`dw3x3_row` for a 3x3 window without
/// dilation, `dw_row` for any other; tinyinfer_kernels_q8.h), which runs
/// the channels in blocks of 16 (the last block overlapping the one before
/// when C is not a multiple of 16), accumulates each pixel's taps on 16
/// int32 lanes (x w is exact; vpdpwssd with AVX-512 VNNI) with the zero
/// point of the taps it is given folded into the bias, and requantizes 16
/// lanes at a time. Window rows above or below the image are not given to
/// it (left out, as the reference skips them; the 3x3 kernel runs only
/// where all three rows are inside); taps left or right of it cancel their
/// share of the folded bias. `dw_row` runs the pixels whose window is
/// inside the image four at a time (one weight load, four independent
/// accumulator chains); at the AVX2 level, 3- and 5-wide windows at stride
/// 1 or 2 do so by tap pairs (two pixels' int16 words interleaved, one
/// vpmaddwd per pair of taps) with the output stage as one 64-bit rounding
/// (q8_depthwise.inc). Fewer than 16 channels run the same kernels on everything padded to 16 channels
/// (`bindSmall`). Other depth multipliers: each pixel's
/// accumulators go through a scratch row, element by element, and are
/// requantized 16 at a time. Work is split over output rows.
enum QDepthwiseConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try ConvFamily.infer(node, inputs, int8: true, depthwise: true)
  }

  /// What one output row needs.
  struct Params {
    let o: QConv2DKernel.Operands
    let d: ConvDims
    /// Channels of the kernel's rows: C, or 16 for the small-channel path
    /// (input, weights, bias, table and output padded to 16 channels).
    let c: Int
    let x: UnsafePointer<Int8>
    let w: UnsafePointer<Int8>
    let bias: UnsafePointer<Int32>?
    let table: QRequantTable
    let y: UnsafeMutablePointer<Int8>
    /// A 3x3 window without dilation (the `dw3x3_row` kernel).
    let is3x3: Bool
    /// The level's C kernels (ti_q8_kernels), fetched at bind.
    let kernels = ti_q8_kernels_get().pointee
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: true)
    let o = try QConv2DKernel.Operands(ctx, depthwise: true)
    let (c, cm, kh, kw) = (d.cin, d.cout, d.kh, d.kw)
    let m = try ctx.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let pool = ctx.pool
    let minChunk = minChunkFor(perItem: d.ow &* kh &* kw &* cm, grain: 1 << 14)  // as the float kernel
    let is3x3 = kh == 3 && kw == 3 && d.dw == 1
    if m != 1 {
      let p = Params(o: o, d: d, c: c, x: o.x, w: o.w, bias: o.bias, table: o.table, y: o.y, is3x3: is3x3)
      let accs = try QBuffer(bytes: pool.threads &* cm &* 4)
      return ConvDriver.depthwise(d, x: o.x, w: o.w, y: o.y, pool: pool, minChunk: minChunk, Taps(p: p, m: m, accs: accs))
    }
    if c < 16 { return try bindSmall(d, o, pool: pool, minChunk: minChunk, is3x3: is3x3) }
    let p = Params(o: o, d: d, c: c, x: o.x, w: o.w, bias: o.bias, table: o.table, y: o.y, is3x3: is3x3)
    // Per-thread window row pointers (row16).
    let windowRows = try Scratch<UnsafePointer<Int8>?>(count: pool.threads &* kh)
    let rows = d.n &* d.oh
    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        let r = UnsafeMutableRawPointer(windowRows.base + chunk &* kh).assumingMemoryBound(to: UnsafePointer<Int8>.self)
        for row in range {
          QDepthwiseConv2DKernel.row16(p, row, r)
        }
      }
      withExtendedLifetime(windowRows) {}
    }
  }

  /// Depth multiplier 1 with fewer than 16 channels: the row kernels on
  /// everything padded to 16 channels. Weights, bias and the output stage
  /// are padded when bound (zero weights and bias, the last channel's
  /// multiplier), the input is copied to 16-byte pixels once per run, and
  /// each output row is computed into a 16-channel scratch row whose first
  /// C bytes per pixel are then copied out (the padding lanes' values are
  /// dropped).
  static func bindSmall(_ d: ConvDims, _ o: QConv2DKernel.Operands, pool: ThreadPool, minChunk: Int, is3x3: Bool)
    throws(TinfError) -> KernelFn
  {
    let (c, taps) = (d.cin, d.kh &* d.kw)
    let w16 = try QBuffer(bytes: taps &* 16)
    for t in 0..<taps { for ch in 0..<c { w16.int8[t &* 16 &+ ch] = o.w[t &* c &+ ch] } }
    var bias16: QBuffer? = nil
    if let bias = o.bias {
      let b = try QBuffer(bytes: 16 &* 4)
      for ch in 0..<c { b.int32[ch] = bias[ch] }
      bias16 = b
    }
    let t = o.table
    var mults = [Int32](repeating: 0, count: 16)
    var shifts = [Int32](repeating: 0, count: 16)
    for ch in 0..<16 {
      let e = min(ch, c &- 1)
      mults[ch] = t.base[t.stride &+ e]
      shifts[ch] = t.base[e] &- t.base[2 &* t.stride &+ e]  // left - right
    }
    let table16 = try mults.withUnsafeBufferPointer { (mp) throws(TinfError) -> QRequantTable in
      try shifts.withUnsafeBufferPointer { (sp) throws(TinfError) -> QRequantTable in
        try QRequantTable(multipliers: mp.baseAddress!, shifts: sp.baseAddress!, count: 16)
      }
    }
    let (pixelsIn, rowOut) = (d.n &* d.h &* d.w, d.ow &* 16)
    guard let inBytes = checkedMul(pixelsIn, 16) else { throw .unsupported("DepthwiseConv2D input too large") }
    let x16 = try QBuffer(bytes: inBytes)
    let yRows = try QBuffer(bytes: pool.threads &* rowOut)
    let p = Params(
      o: o, d: d, c: 16, x: UnsafePointer(x16.int8), w: UnsafePointer(w16.int8),
      bias: bias16.map { UnsafePointer($0.int32) }, table: table16, y: yRows.int8, is3x3: is3x3)
    let windowRows = try Scratch<UnsafePointer<Int8>?>(count: pool.threads &* d.kh)
    let (rows, kh, ow, x, y) = (d.n &* d.oh, d.kh, d.ow, o.x, o.y)
    return { () throws(TinfError) in
      spread16(x, c: c, pixels: pixelsIn, into: x16.int8)
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        let r = UnsafeMutableRawPointer(windowRows.base + chunk &* kh).assumingMemoryBound(to: UnsafePointer<Int8>.self)
        let scratch = yRows.int8 + chunk &* rowOut
        for row in range {
          QDepthwiseConv2DKernel.row16(p, row, r, into: scratch)
          gather16(UnsafePointer(scratch), c: c, pixels: ow, into: y + row &* ow &* c)
        }
      }
      withExtendedLifetime((w16, bias16, x16, yRows, windowRows, table16)) {}
    }
  }

  /// Pixels of c < 16 bytes at x to 16-byte pixels at t (the first c bytes
  /// of each; the other 16 - c are the padding lanes, whose weights are
  /// zero: what they hold adds nothing). 16 bytes are moved at once while
  /// the load stays inside x.
  @inline(__always)
  static func spread16(_ x: UnsafePointer<Int8>, c: Int, pixels: Int, into t: UnsafeMutablePointer<Int8>) {
    let (src, dst, total) = (UnsafeRawPointer(x), UnsafeMutableRawPointer(t), pixels &* c)
    var px = 0
    while px < pixels && px &* c &+ 16 <= total {
      dst.storeBytes(of: src.loadUnaligned(fromByteOffset: px &* c, as: SIMD16<Int8>.self), toByteOffset: px &* 16, as: SIMD16<Int8>.self)
      px &+= 1
    }
    while px < pixels {
      for ch in 0..<c { t[px &* 16 &+ ch] = x[px &* c &+ ch] }
      px &+= 1
    }
  }

  /// The first c bytes of each 16-byte pixel at s to pixels of c bytes at y
  /// (one output row: nothing past pixels * c is written). In order, 16
  /// bytes at once while the store stays inside the row: the bytes past a
  /// pixel's c are rewritten by the pixels after it.
  @inline(__always)
  static func gather16(_ s: UnsafePointer<Int8>, c: Int, pixels: Int, into y: UnsafeMutablePointer<Int8>) {
    let (src, dst, total) = (UnsafeRawPointer(s), UnsafeMutableRawPointer(y), pixels &* c)
    var px = 0
    while px < pixels && px &* c &+ 16 <= total {
      dst.storeBytes(of: src.loadUnaligned(fromByteOffset: px &* 16, as: SIMD16<Int8>.self), toByteOffset: px &* c, as: SIMD16<Int8>.self)
      px &+= 1
    }
    while px < pixels {
      for ch in 0..<c { y[px &* c &+ ch] = s[px &* 16 &+ ch] }
      px &+= 1
    }
  }

  /// The int8 step of ConvDriver.depthwise (any depth multiplier, any
  /// channel count): int32 accumulators in per-thread scratch from the
  /// bias, `acc += w (x - zp_x)`, then the output stage.
  struct Taps: DepthwiseTaps {
    let p: Params
    let m: Int
    let accs: QBuffer

    @inline(__always)
    func begin(_ y: UnsafeMutablePointer<Int8>, chunk: Int) -> UnsafeMutablePointer<Int32> {
      let cm = p.d.cin &* m
      let acc = accs.int32 + chunk &* cm
      if let bias = p.o.bias {
        acc.update(from: bias, count: cm)
      } else {
        acc.update(repeating: 0, count: cm)
      }
      return acc
    }

    @inline(__always)
    func tap(_ acc: UnsafeMutablePointer<Int32>, _ x: UnsafePointer<Int8>, _ w: UnsafePointer<Int8>) {
      var o = 0
      for ch in 0..<p.d.cin {
        let v = Int32(x[ch]) &- p.o.xz
        for _ in 0..<m {
          acc[o] &+= Int32(w[o]) &* v
          o &+= 1
        }
      }
    }

    @inline(__always)
    func finish(_ acc: UnsafeMutablePointer<Int32>, _ y: UnsafeMutablePointer<Int8>) {
      p.o.table.requantize(acc, from: 0, zp: p.o.yz, lo: p.o.lo, hi: p.o.hi, y, p.d.cin &* m)
    }
  }

  /// One output row (image b = row / OH, oy = row % OH) with M = 1, C >= 16:
  /// the window rows inside the image (i0 ..< i1) into `rows`, then one call
  /// of the row kernel. Window rows above or below the image are left out
  /// with their weights: the kernel folds the zero point of the taps it is
  /// given into the bias, so the result is the reference's, which skips
  /// them. The 3x3 kernel runs when all three rows are inside.
  /// `into`: where the row goes (default: its place in `p.y`).
  @inline(never)
  static func row16(
    _ p: Params, _ row: Int, _ rows: UnsafeMutablePointer<UnsafePointer<Int8>>,
    into: UnsafeMutablePointer<Int8>? = nil
  ) {
    let d = p.d
    let c = p.c
    let b = row / d.oh
    let oy = row &- b &* d.oh
    let iy0 = oy &* d.sh &- d.padT
    let rowStride = d.w &* c
    let ximg = p.x + b &* d.h &* rowStride
    let yrow = into ?? p.y + row &* d.ow &* c
    var (i0, i1) = (0, d.kh)
    while i0 < d.kh && iy0 &+ i0 &* d.dh < 0 { i0 &+= 1 }
    while i1 > i0 && iy0 &+ (i1 &- 1) &* d.dh >= d.h { i1 &-= 1 }
    for i in i0..<i1 {
      rows[i] = ximg + (iy0 &+ i &* d.dh) &* rowStride
    }
    let o = p.o
    if p.is3x3 && i0 == 0 && i1 == 3 {
      p.kernels.dw3x3_row(
        rows[0], rows[1], rows[2], yrow, p.w, c, d.sw, d.padL, d.w, d.ow, p.bias, o.xz, p.table.base, p.table.stride,
        o.yz, o.lo, o.hi)
    } else {
      p.kernels.dw_row(
        rows + i0, i1 &- i0, d.kw, yrow, p.w + i0 &* d.kw &* c, c, d.sw, d.dw, d.padL, d.w, d.ow, p.bias, o.xz,
        p.table.base, p.table.stride, o.yz, o.lo, o.hi)
    }
  }
}
