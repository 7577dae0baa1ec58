import TinyInferShims

/// int8 DepthwiseConv2D: TFLite's DepthwiseConvPerChannel reference kernel
/// (see QConv.swift for the parameters). Output channel c*M+m reads input
/// channel c; `acc = sum w (x - zp_x) + bias` over the taps inside the image
/// (padding contributes nothing), then per channel
/// `y = clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)`.
///
/// Depth multiplier 1: each thread's range of output rows is one call per
/// image of the level's `dw_rows` (tinyinfer_kernels_q8.h), given the layer
/// (`ti_q8_dw`) and the data the level built from it once at bind
/// (`dw_prep`). At the AVX2 level, for 3- and 5-wide windows at stride 1 or
/// 2 without horizontal dilation and OW >= 4, that is per block of 16
/// channels the tap-pair weights, the bias with the zero point folded in
/// over the whole window and the output stage; every pixel then runs in
/// quads of four (the last one or two as a pair; int16 words interleaved in
/// pairs, one vpmaddwd per pair of taps: two window rows' taps of a column
/// away from the left and right edges, two taps along a row at those edges
/// and for an odd row left over; the output stage as one 64-bit rounding), a
/// window row above or below the image adding back its share of the folded
/// bias and columns left or right of it read as the zero point
/// (q8_depthwise.inc). Otherwise (other
/// shapes, other levels) `dw_rows` gives each row's window rows inside the
/// image to `dw3x3_row` / `dw_row`, which run the channels in blocks of 16
/// (the last block overlapping the one before when C is not a multiple of
/// 16), fold the zero point of the taps they are given into the bias, run
/// the pixels whose window is inside the image four at a time and the
/// others one by one (x w is exact; vpdpwssd with AVX-512 VNNI). Fewer than
/// 16 channels run the same kernels on everything padded to 16 channels
/// (`bindSmall`), except where the level's `dw_prep` takes them as they are
/// (below). Other depth multipliers: each pixel's accumulators go
/// through a scratch row, element by element, and are requantized 16 at a
/// time. Work is split over output rows.
///
/// At the AVX2 level, C = 8 or 4 with 3- and 5-wide windows at stride 1 (C = 8
/// also at stride 2) and OW >= 64 / C do not pad: `dw_prep` repeats every
/// per-channel constant 16 / C times and each 16-lane vector holds 16 / C
/// adjacent output pixels (q8_depthwise.inc's superpixels).
enum QDepthwiseConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try ConvFamily.infer(node, inputs, int8: true, depthwise: true)
  }

  /// What the M = 1 path needs (C >= 16, or everything padded to 16
  /// channels): the layer as the C kernels take it (`ti_q8_dw`), the data
  /// the level builds from it once (`dw_prep`: at the AVX2 level the
  /// per-block tap-pair weights, folded bias and output stage; none at the
  /// other levels), and what they point to.
  struct Params {
    let layer: Scratch<ti_q8_dw>
    let prep: QBuffer?
    /// The weights, bias and table `layer` points to, kept alive.
    let keep: (QRequantTable, QBuffer?, QBuffer?)
    let oh: Int, imageIn: Int, rowOut: Int
    /// The level's C kernels (ti_q8_kernels), fetched at bind.
    let kernels = ti_q8_kernels_get().pointee

    init(
      _ d: ConvDims, _ o: QConv2DKernel.Operands, c: Int, w: UnsafePointer<Int8>, bias: UnsafePointer<Int32>?,
      table: QRequantTable, keep: (QBuffer?, QBuffer?) = (nil, nil)
    ) throws(TinfError) {
      layer = try Scratch<ti_q8_dw>(count: 1)
      layer.base.pointee = ti_q8_dw(
        w: w, bias: bias, table: table.base, stride: table.stride, c: c, h: d.h, in_w: d.w, kh: d.kh, kw: d.kw,
        sh: d.sh, sw: d.sw, dh: d.dh, dw: d.dw, pad_t: d.padT, pad_l: d.padL, ow: d.ow, xz: o.xz, zp: o.yz,
        lo: o.lo, hi: o.hi)
      let bytes = kernels.dw_prep(layer.base, nil)
      if bytes > 0 {
        let b = try QBuffer(bytes: bytes)
        _ = kernels.dw_prep(layer.base, b.raw)
        prep = b
      } else {
        prep = nil
      }
      self.keep = (table, keep.0, keep.1)
      (oh, imageIn, rowOut) = (d.oh, d.h &* d.w &* c, d.ow &* c)
    }

    /// Output rows `range` of the N * OH rows of the batch at x, row
    /// range.lowerBound at y: one call of the level's `dw_rows` per image.
    @inline(__always)
    func run(
      _ range: Range<Int>, x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int8>,
      rows: UnsafeMutablePointer<UnsafePointer<Int8>>
    ) {
      var r = range.lowerBound
      while r < range.upperBound {
        let b = r / oh
        let oy = r &- b &* oh
        let n = min(range.upperBound &- r, oh &- oy)
        kernels.dw_rows(
          layer.base, prep.map { UnsafeRawPointer($0.raw) }, x + b &* imageIn, y + (r &- range.lowerBound) &* rowOut,
          oy, oy &+ n, rows)
        r &+= n
      }
    }
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: true)
    let o = try QConv2DKernel.Operands(ctx, depthwise: true)
    let (c, cm, kh, kw) = (d.cin, d.cout, d.kh, d.kw)
    let m = try ctx.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let pool = ctx.pool
    let minChunk = minChunkFor(perItem: d.ow &* kh &* kw &* cm, grain: SplitGrain.depthwise)  // as the float kernel
    if m != 1 {
      let accs = try QBuffer(bytes: pool.threads &* cm &* 4)
      let taps = Taps(o: o, c: c, m: m, accs: accs)
      return ConvDriver.depthwise(d, x: o.x, w: o.w, y: o.y, pool: pool, minChunk: minChunk, taps)
    }
    let p = try Params(d, o, c: c, w: o.w, bias: o.bias, table: o.table)
    // Fewer than 16 channels run directly only where the level has
    // precomputed data for them (AVX2: C = 8 or 4, several pixels a vector).
    if c < 16 && p.prep == nil { return try bindSmall(d, o, pool: pool, minChunk: minChunk) }
    // Per-thread window row pointers (dw_rows' scratch).
    let windowRows = try Scratch<UnsafePointer<Int8>?>(count: pool.threads &* kh)
    let (rows, x, y) = (d.n &* d.oh, o.x, o.y)
    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        let r = UnsafeMutableRawPointer(windowRows.base + chunk &* kh).assumingMemoryBound(to: UnsafePointer<Int8>.self)
        p.run(range, x: x, y: y + range.lowerBound &* p.rowOut, rows: r)
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
  static func bindSmall(_ d: ConvDims, _ o: QConv2DKernel.Operands, pool: ThreadPool, minChunk: Int)
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
    var floats = [Float](repeating: 0, count: 16)
    for ch in 0..<16 {
      let e = min(ch, c &- 1)
      mults[ch] = t.base[t.stride &+ e]
      shifts[ch] = t.base[e] &- t.base[2 &* t.stride &+ e]  // left - right
      floats[ch] = t.floatScale(e)
    }
    let table16 = try mults.withUnsafeBufferPointer { (mp) throws(TinfError) -> QRequantTable in
      try shifts.withUnsafeBufferPointer { (sp) throws(TinfError) -> QRequantTable in
        try QRequantTable(
          multipliers: mp.baseAddress!, shifts: sp.baseAddress!, count: 16, floatScales: t.isFloat ? floats : nil)
      }
    }
    let (pixelsIn, rowOut) = (d.n &* d.h &* d.w, d.ow &* 16)
    guard let inBytes = checkedMul(pixelsIn, 16) else { throw .unsupported("DepthwiseConv2D input too large") }
    let x16 = try QBuffer(bytes: inBytes)
    let yRows = try QBuffer(bytes: pool.threads &* rowOut)
    let p = try Params(
      d, o, c: 16, w: UnsafePointer(w16.int8), bias: bias16.map { UnsafePointer($0.int32) }, table: table16,
      keep: (w16, bias16))
    let windowRows = try Scratch<UnsafePointer<Int8>?>(count: pool.threads &* d.kh)
    let (rows, kh, ow, x, y) = (d.n &* d.oh, d.kh, d.ow, o.x, o.y)
    return { () throws(TinfError) in
      spread16(x, c: c, pixels: pixelsIn, into: x16.int8)
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        let r = UnsafeMutableRawPointer(windowRows.base + chunk &* kh).assumingMemoryBound(to: UnsafePointer<Int8>.self)
        let scratch = yRows.int8 + chunk &* rowOut
        for row in range {
          p.run(row..<row &+ 1, x: UnsafePointer(x16.int8), y: scratch, rows: r)
          gather16(UnsafePointer(scratch), c: c, pixels: ow, into: y + row &* ow &* c)
        }
      }
      withExtendedLifetime((x16, yRows, windowRows)) {}
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
    let o: QConv2DKernel.Operands
    let c: Int
    let m: Int
    let accs: QBuffer

    @inline(__always)
    func begin(_ y: UnsafeMutablePointer<Int8>, chunk: Int) -> UnsafeMutablePointer<Int32> {
      let cm = c &* m
      let acc = accs.int32 + chunk &* cm
      if let bias = o.bias {
        acc.update(from: bias, count: cm)
      } else {
        acc.update(repeating: 0, count: cm)
      }
      return acc
    }

    @inline(__always)
    func tap(_ acc: UnsafeMutablePointer<Int32>, _ x: UnsafePointer<Int8>, _ w: UnsafePointer<Int8>) {
      var k = 0
      for ch in 0..<c {
        let v = Int32(x[ch]) &- o.xz
        for _ in 0..<m {
          acc[k] &+= Int32(w[k]) &* v
          k &+= 1
        }
      }
    }

    @inline(__always)
    func finish(_ acc: UnsafeMutablePointer<Int32>, _ y: UnsafeMutablePointer<Int8>) {
      o.table.requantize(acc, from: 0, zp: o.yz, lo: o.lo, hi: o.hi, y, c &* m)
    }
  }
}
