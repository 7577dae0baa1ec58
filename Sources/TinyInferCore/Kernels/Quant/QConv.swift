import TinyInferShims

/// int8 Conv2D and DepthwiseConv2D (the latter in QDepthwiseConv2D.swift):
/// TFLite's ConvPerChannel and DepthwiseConvPerChannel reference kernels. x int8 NHWC per tensor; weights
/// int8, symmetric (zero point 0), per channel (Conv2D along dim 0,
/// DepthwiseConv2D along dim 3) or per tensor; optional int32 bias.
/// `acc = sum w (x - zp_x) + bias` over the taps inside the image (padding
/// contributes nothing), `y = clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)`,
/// `M_c = s_x s_w[c] / s_y` computed in double.

enum QConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try ConvFamily.infer(node, inputs, int8: true, depthwise: false)
  }

  /// What the int8 paths share: the data, the output stage and the zero points.
  struct Operands {
    let x: UnsafePointer<Int8>
    let w: UnsafePointer<Int8>
    let bias: UnsafePointer<Int32>?
    let y: UnsafeMutablePointer<Int8>
    let table: QRequantTable
    let xz: Int32, yz: Int32, lo: Int32, hi: Int32
    /// Whether the bias is a constant (or absent): the packed paths then
    /// compute their starting accumulators once, at bind, not per run (a
    /// one-pixel layer of a streaming model spent a fifth of its run there).
    let biasConstant: Bool

    /// The operands of a bound int8 Conv2D or (`depthwise`)
    /// DepthwiseConv2D: weights quantized per tensor or per output channel,
    /// `M_c = s_x s_w[c] / s_y`.
    init(_ ctx: KernelContext, depthwise: Bool) throws(TinfError) {
      let what = depthwise ? "DepthwiseConv2D" : "Conv2D"
      let wd = ctx.inputs[1]!
      let xq = try QCheck.perTensor(ctx.inputs[0]!, "input")
      let yq = try QCheck.output(ctx)
      let axis = depthwise ? 3 : 0
      let (scales, _) = try QCheck.weights(wd, channels: wd.shape[axis], axis: axis, what)
      table = try QRequantTable(
        inScale: xq.scale, weightScales: scales, outScale: yq.scale, periodic: !depthwise,
        float: try QCheck.floatRequantization(ctx), what)
      (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
      (xz, yz) = (xq.zeroPoint, yq.zeroPoint)
      x = ctx.input(0, Int8.self)
      w = ctx.input(1, Int8.self)
      bias = ctx.optionalInput(2, Int32.self)
      biasConstant = ctx.inputs.count < 3 || (ctx.inputs[2]?.isConstant ?? true)
      y = ctx.output(0, Int8.self)
    }

    /// The GEMM's starting accumulators `bias - (128 + zp_x) sum w` of the
    /// packed paths (their rows are `x + 128`), so that they come out as
    /// `sum w (x - zp_x) + bias`.
    @inline(__always)
    func initial(_ weights: QPackedGemm.Weights, _ initial: Scratch<Int32>, _ cout: Int) {
      let offset = 128 &+ xz
      for c in 0..<cout {
        initial.base[c] = (bias?[c] ?? 0) &- offset &* weights.colSums.base[c]
      }
    }
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: false)
    let o = try Operands(ctx, depthwise: false)
    let wd = ctx.inputs[1]!
    let groups = try ctx.attrs.int(.groups, default: 1, in: 1...(1 << 20))
    let cout = d.cout
    // Sparse weights (chosen at load for 1x1, stride 1, one group, symmetric weights).
    if let s = ctx.sparse, groups == 1, d.direct, d.sh == 1, d.sw == 1, d.oh == d.h, d.ow == d.w {
      return try SparseGemm.bindInt8(
        s, x: o.x, m: d.pixels, bias: o.bias, xZeroPoint: o.xz, y: o.y, table: o.table, yz: o.yz, lo: o.lo, hi: o.hi,
        pool: ctx.pool)
    }
    // The indirect path's tiles are eight pixels: fewer pixels (a layer
    // whose output is a pixel or two) go through bindPacked, whose one-row
    // GEMM kernel computes only the rows it stores.
    // Short window rows (a first layer's 3x3 window of 1 to 4 channels):
    // the level's direct kernel, where it has one.
    if groups == 1 && wd.isConstant && o.biasConstant && d.dw == 1 && d.kw &* d.cin <= 16 && d.kh &* d.kw > 1,
      let fn = try bindDirect(ctx, d, o)
    {
      return fn
    }
    // 1x1 of at most 128 input channels (TI_Q8_1X1_KMAX): the level's direct 1x1 kernel.
    if groups == 1 && wd.isConstant && o.biasConstant && d.kh == 1 && d.kw == 1 && d.sh == 1 && d.sw == 1 && d.direct
      && d.oh == d.h && d.ow == d.w && d.cin <= 128 && d.pixels >= 8, let fn = try bind1x1(ctx, d, o)
    {
      return fn
    }
    if groups == 1 && wd.isConstant && !d.direct && d.dw == 1 && d.pixels >= 8 {
      return try bindIndirect(ctx, d, o)
    }
    if groups == 1 && wd.isConstant {
      return try bindPacked(ctx, d, o)
    }
    // Patches are gathered with the input zero point in the padding, so
    // acc = sum w x - zp_x sum w needs each weight row's sum.
    let k = d.kh &* d.kw &* (d.cin / groups)  // weight row length
    let step = Tile(
      o: o, rowSums: try QBuffer(bytes: cout &* 4), constantWeights: wd.isConstant,
      accRows: try QBuffer(bytes: ctx.pool.threads &* cout &* 4), groups: groups, og: cout / groups, k: k, cout: cout)
    if wd.isConstant { step.sumRows() }
    return try ConvDriver.general(
      d, groups: groups, x: o.x, pad: UInt8(truncatingIfNeeded: o.xz), y: o.y, pool: ctx.pool, step)
  }

  /// The int8 step of ConvDriver.general (any groups, weights constant or
  /// not): per pixel, int8 dot products with four weight rows at a time,
  /// `acc = dot - zp_x sum w + bias`, then the output stage.
  struct Tile: ConvTile {
    let o: Operands
    let rowSums: QBuffer
    let constantWeights: Bool
    let accRows: QBuffer
    let groups: Int, og: Int, k: Int, cout: Int
    /// The level's dot-product kernel, fetched at bind.
    let dot: Q8DotRows = ti_q8_kernels_get().pointee.dot_rows

    func sumRows() {
      for c in 0..<cout { rowSums.int32[c] = sumInt8(o.w + c &* k, k) }
    }

    func prepare() {
      if !constantWeights { sumRows() }
    }

    // Out of line: inlined into the driver's closure, the SIMD lane reads
    // kept their range checks as calls (checked with objdump).
    @inline(never)
    func run(_ a: PatchTile<Int8>, count: Int, groupStride: Int, _ y0: UnsafeMutablePointer<Int8>, chunk: Int) {
      let rs = UnsafePointer(rowSums.int32)
      let accs = accRows.int32 + chunk &* cout
      let (xz, bias) = (o.xz, o.bias)
      for s in 0..<count {
        let ap = s == 0 ? a.0 : (s == 1 ? a.1 : (s == 2 ? a.2 : a.3))
        for g in 0..<groups {
          dotInt8Rows(dot, ap + g &* groupStride, o.w, k, g &* og..<(g &+ 1) &* og) { c, dot in
            var acc = dot &- xz &* rs[c]
            if let bias { acc &+= bias[c] }
            accs[c] = acc
          }
        }
        o.table.requantize(accs, from: 0, zp: o.yz, lo: o.lo, hi: o.hi, y0 + s &* cout, cout)
      }
    }
  }

  /// One group and constant weights: blocks of 48 output pixels go through
  /// the packed int8 GEMM (QPackedGemm, weights packed when the session is
  /// made). Each block's patches (or, for 1x1 convolutions, its input
  /// pixels) are copied as unsigned bytes, rows padded to a multiple of
  /// four; the accumulators start from `bias - (128 + zp_x) * sum w`, so
  /// they come out as `sum w (x - zp_x) + bias` and are requantized as in
  /// the per-pixel path.
  static func bindPacked(_ ctx: KernelContext, _ d: ConvDims, _ o: Operands) throws(TinfError) -> KernelFn {
    let (x, y, cin, cout) = (o.x, o.y, d.cin, d.cout)
    let (oh, ow) = (d.oh, d.ow)
    let k = d.kh &* d.kw &* cin
    let k4 = QPackedGemm.paddedDepth(k)
    let pixels = d.pixels
    let direct = d.direct
    let contiguous = direct && d.sh == 1 && d.sw == 1 && k == k4
    let block = 48
    let pool = ctx.pool
    let weights = try QPackedGemm.Weights(o.w, n: cout, k: k)
    let initial = try Scratch<Int32>(count: weights.panels &* QPackedGemm.nr)
    let rows = try Scratch<UInt8>(count: pool.threads &* block &* k4)
    let sums = try Scratch<Int32>(count: pool.threads &* block &* cout)
    let pad = UInt8(bitPattern: Int8(truncatingIfNeeded: o.xz)) ^ 0x80
    // Chunks of at least SplitGrain.gemmInt8 multiply-adds (and whole tiles).
    let minChunk = max(QPackedGemm.mr, minChunkFor(perItem: k &* cout, grain: SplitGrain.gemmInt8))
    if o.biasConstant { o.initial(weights, initial, cout) }
    return { () throws(TinfError) in
      if !o.biasConstant { o.initial(weights, initial, cout) }
      let ini = UnsafePointer(initial.base)
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        let buf = rows.base + chunk &* block &* k4
        let acc = sums.base + chunk &* block &* cout
        var p = range.lowerBound
        while p < range.upperBound {
          let count = min(block, range.upperBound &- p)
          var cursor = PixelCursor(p, oh: oh, ow: ow)
          // A stride-1 1x1 convolution with a depth that is a multiple of
          // four: the block's rows are consecutive input bytes.
          let rowsInPlace = contiguous ? count : 0
          if contiguous { QPackedGemm.toUnsigned(x + p &* cin, buf, count &* k) }
          for s in rowsInPlace..<count {
            let row = buf + s &* k4
            if direct {
              QPackedGemm.toUnsigned(x + d.inputPixel(cursor) &* cin, row, k)
            } else {
              gatherPatchUnsigned(row, x, d, b: cursor.b, oy: cursor.oy, ox: cursor.ox, pad: pad)
            }
            cursor.advance(1)
          }
          QPackedGemm.run(
            rows: count, a: UnsafePointer(buf), lda: k4, weights: weights, initial: ini, acc: acc, ldo: cout)
          o.table.requantizePixels(acc, count, zp: o.yz, lo: o.lo, hi: o.hi, y + p &* cout)
          p &+= block
        }
      }
      withExtendedLifetime((weights, rows, sums, initial)) {}
    }
  }

  /// What the level's direct kernels (`conv_rows16`, `conv1x1_rows`) take
  /// of a layer with constant weights and bias: the output stage's blocks
  /// (`rq_prepare`), the weights as int16 pairs [block][kh][pairs][16][2]
  /// (zeros past cout and kw * cin) and the bias padded to whole blocks;
  /// nil where the level has no such kernels or the output range is not
  /// within int8 (they clamp on bytes).
  struct DirectWeights {
    let kernels = ti_q8_kernels_get().pointee
    let rq: Scratch<UInt8>
    let w16: Scratch<Int16>
    let bias: Scratch<Int32>
    let blocks: Int
    let pairs: Int

    init?(_ d: ConvDims, _ o: Operands) throws(TinfError) {
      guard o.lo >= -128 && o.hi <= 127 && o.lo <= o.hi else { return nil }
      let (cout, kh, kwc) = (d.cout, d.kh, d.kw &* d.cin)
      blocks = (cout &+ 15) / 16
      pairs = (kwc &+ 1) / 2
      rq = try Scratch<UInt8>(count: blocks &* Int(TI_Q8_RQ_BLOCK_BYTES))
      guard kernels.rq_prepare(o.table.base, o.table.stride, blocks, o.yz, rq.base) == 1 else { return nil }
      w16 = try Scratch<Int16>(count: blocks &* kh &* pairs &* 32)
      for c in 0..<cout {
        let (b, j) = (c / 16, c % 16)
        for i in 0..<kh {
          for k in 0..<kwc {
            w16.base[((b &* kh &+ i) &* pairs &+ k / 2) &* 32 &+ j &* 2 &+ k % 2] = Int16(o.w[(c &* kh &+ i) &* kwc &+ k])
          }
        }
      }
      bias = try Scratch<Int32>(count: blocks &* 16)
      if let bp = o.bias { for c in 0..<cout { bias.base[c] = bp[c] } }
    }
  }

  /// A 1x1 convolution of at most 128 input channels, stride 1, no padding,
  /// constant weights and bias: the level's `conv1x1_rows` over ranges of
  /// pixels (the input read in place, the output stage in registers); nil
  /// where the level has no such kernel.
  static func bind1x1(_ ctx: KernelContext, _ d: ConvDims, _ o: Operands) throws(TinfError) -> KernelFn? {
    let (x, y, xz, lo, hi, k, cout) = (o.x, o.y, o.xz, o.lo, o.hi, d.cin, d.cout)
    let run = ti_q8_kernels_get().pointee.conv1x1_rows
    // The level's depth limit (128 at AVX2; none with AVX-512 VNNI, whose
    // packed vpdpbusd GEMM is faster at every depth): a call with no
    // pixels reads and writes nothing, so it is asked before the weights
    // are widened (no pointer is read).
    let none = UnsafeRawPointer(x)
    guard
      run(
        x, 0, k, xz, none.assumingMemoryBound(to: Int16.self), none.assumingMemoryBound(to: Int32.self), none,
        (cout &+ 15) / 16, cout, lo, hi, y) == 1
    else { return nil }
    guard let prep = try DirectWeights(d, o) else { return nil }
    let pool = ctx.pool
    let minChunk = max(64, minChunkFor(perItem: cout &* prep.pairs &* 2, grain: SplitGrain.gemmInt8))
    return { () throws(TinfError) in
      forEachChunk(pool, d.pixels, minChunk: minChunk) { _, range in
        _ = run(
          x + range.lowerBound &* k, range.count, k, xz, UnsafePointer(prep.w16.base), UnsafePointer(prep.bias.base),
          UnsafeRawPointer(prep.rq.base), prep.blocks, cout, lo, hi, y + range.lowerBound &* cout)
      }
      withExtendedLifetime(prep) {}
    }
  }

  /// Windows of short rows (kw * cin <= 16: a first layer's 3x3 window of
  /// 1 to 4 channels), one group, constant weights and bias, dilation 1
  /// along W: the level's direct kernel (`conv_rows16`), one call per
  /// output row, on an int16 image of `x - zp_x` whose zero padding is
  /// built in (made once; its interior rewritten each run), so that
  /// border pixels need no case of their own. nil where the level has no
  /// such kernel (`rq_prepare` says so at bind).
  static func bindDirect(_ ctx: KernelContext, _ d: ConvDims, _ o: Operands) throws(TinfError) -> KernelFn? {
    let (n, h, w, cin, kh, kw) = (d.n, d.h, d.w, d.cin, d.kh, d.kw)
    let (oh, ow, sh, sw, dh, padT, padL) = (d.oh, d.ow, d.sh, d.sw, d.dh, d.padT, d.padL)
    guard let prep = try DirectWeights(d, o) else { return nil }
    let (kernels, rq, w16, bias, blocks, pairs) = (prep.kernels, prep.rq, prep.w16, prep.bias, prep.blocks, prep.pairs)
    let cout = d.cout
    // The padded image: row r is input row r - padT, column q input column
    // q - padL; tall and wide enough for every window, plus a column for
    // the element an odd window row's last pair reads past it.
    let hp = max(padT &+ h, (oh &- 1) &* sh &+ (kh &- 1) &* dh &+ 1)
    let wp = max(padL &+ w, (ow &- 1) &* sw &+ kw) &+ 1
    // The copy's memory stays with the session: beyond 8 MB (a large batch)
    // the indirect path, which reads the input in place, is used instead.
    guard let imageCount = checkedMul(n &* hp, wp &* cin), imageCount <= 1 << 22 else { return nil }
    let image = try Scratch<Int16>(count: imageCount)  // zeroed: the padding
    let (x, y, zp) = (o.x, o.y, Int16(truncatingIfNeeded: o.xz))
    let (lo, hi) = (o.lo, o.hi)
    let pool = ctx.pool
    let rows = n &* oh
    let minChunk = minChunkFor(perItem: ow &* cout &* kh &* pairs &* 2, grain: SplitGrain.gemmInt8)
    let run = kernels.conv_rows16
    return { () throws(TinfError) in
      for b in 0..<n {
        for iy in 0..<h {
          widenMinusZero(
            x + (b &* h &+ iy) &* w &* cin, image.base + ((b &* hp &+ iy &+ padT) &* wp &+ padL) &* cin, w &* cin, zp)
        }
      }
      forEachChunk(pool, rows, minChunk: minChunk) { _, range in
        for r in range {
          let (b, oy) = (r / oh, r % oh)
          _ = run(
            UnsafePointer(image.base + (b &* hp &+ oy &* sh) &* wp &* cin), dh &* wp &* cin, kh, pairs, sw &* cin, ow,
            UnsafePointer(w16.base), UnsafePointer(bias.base), UnsafeRawPointer(rq.base), blocks, cout, lo, hi,
            y + r &* ow &* cout)
        }
      }
      withExtendedLifetime((image, w16, bias, rq)) {}
    }
  }

  /// dst[i] = src[i] - zp as int16 (in [-255, 255]) for i < count.
  @inline(__always)
  static func widenMinusZero(_ src: UnsafePointer<Int8>, _ dst: UnsafeMutablePointer<Int16>, _ count: Int, _ zp: Int16) {
    let z = SIMD16<Int16>(repeating: zp)
    let s = UnsafeRawPointer(src)
    let dr = UnsafeMutableRawPointer(dst)
    var i = 0
    while i &+ 16 <= count {
      let v = SIMD16<Int16>(truncatingIfNeeded: s.loadUnaligned(fromByteOffset: i, as: SIMD16<Int8>.self)) &- z
      dr.storeBytes(of: v, toByteOffset: i &* 2, as: SIMD16<Int16>.self)
      i &+= 16
    }
    while i < count {
      dst[i] = Int16(src[i]) &- zp
      i &+= 1
    }
  }

  /// One group, constant weights, windows whose rows are contiguous
  /// (dilation 1 along W): an indirect convolution on the packed int8 GEMM.
  /// The input is copied once per run as unsigned bytes (`x ^ 0x80`, with
  /// 64 bytes of slack after it); each window row of kw * cin bytes is then
  /// read in place, as a piece of the depth padded to a multiple of four
  /// (the weights get zeros there, so the extra bytes count for nothing).
  /// Window rows above or below the image read a row of the input zero
  /// point; rows cut by the left or right edge are gathered with it. The
  /// accumulators start from `bias - (128 + zp_x) sum w` as in bindPacked.
  static func bindIndirect(_ ctx: KernelContext, _ d: ConvDims, _ o: Operands) throws(TinfError) -> KernelFn {
    let (h, wIn, cin, cout, kh, kw) = (d.h, d.w, d.cin, d.cout, d.kh, d.kw)
    let (oh, ow, sw) = (d.oh, d.ow, d.sw)
    let (w, x, y) = (o.w, o.x, o.y)
    let segLen = kw &* cin
    let seg4 = QPackedGemm.paddedDepth(segLen)
    let k = kh &* segLen
    // Weights with each window row padded to seg4 (zeros).
    let padded = try Scratch<Int8>(count: cout &* kh &* seg4)
    for c in 0..<cout {
      for i in 0..<kh {
        let src = w + (c &* k &+ i &* segLen)
        let dst = padded.base + (c &* kh &+ i) &* seg4
        for t in 0..<segLen { dst[t] = src[t] }
      }
    }
    let weights = try QPackedGemm.Weights(UnsafePointer(padded.base), n: cout, k: kh &* seg4)
    let panels = weights.panels
    let panelBytes = weights.groups &* 64
    let pixels = d.pixels
    let pool = ctx.pool
    let inputBytes = d.n &* h &* wIn &* cin
    let unsigned = try Scratch<UInt8>(count: inputBytes &+ 64)
    let pad = UInt8(bitPattern: Int8(truncatingIfNeeded: o.xz)) ^ 0x80
    let padRowLength = 8 &* sw &* cin &+ seg4 &+ 64
    let padRow = try Scratch<UInt8>(count: padRowLength)
    for i in 0..<padRowLength { padRow.base[i] = pad }
    let edges = try Scratch<UInt8>(count: pool.threads &* 8 &* kh &* seg4)
    let pointers = try Scratch<UnsafePointer<UInt8>?>(count: pool.threads &* 8 &* kh)
    let windows = IndirectWindows(
      h: h, w: wIn, cin: cin, kh: kh, kw: kw, sh: d.sh, sw: sw, dh: d.dh, padT: d.padT, padL: d.padL, pieceStride: seg4)
    let sums = try Scratch<Int32>(count: pool.threads &* 8 &* cout)
    let initial = try Scratch<Int32>(count: panels &* QPackedGemm.nr)
    let minChunk = max(QPackedGemm.mr, minChunkFor(perItem: k &* cout, grain: SplitGrain.gemmInt8))
    if o.biasConstant { o.initial(weights, initial, cout) }
    return { () throws(TinfError) in
      if !o.biasConstant { o.initial(weights, initial, cout) }
      QPackedGemm.toUnsigned(x, unsigned.base, inputBytes)
      let ini = UnsafePointer(initial.base)
      let wp = UnsafeRawPointer(weights.data.base)
      let tiles = weights.kernels.gemm_indirect
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        let ptrs = UnsafeMutableRawPointer(pointers.base + chunk &* 8 &* kh)
          .assumingMemoryBound(to: UnsafePointer<UInt8>.self)
        let edge = edges.base + chunk &* 8 &* kh &* seg4
        let acc = sums.base + chunk &* 8 &* cout
        var cursor = PixelCursor(range.lowerBound, oh: oh, ow: ow)
        var p = range.lowerBound
        while p < range.upperBound {
          let count = windows.fill(
            ptrs, &cursor, limit: range.upperBound &- p, x: UnsafePointer(unsigned.base),
            padRow: UnsafePointer(padRow.base), edge: edge, pad: pad)
          tiles(UnsafePointer(ptrs), kh, seg4 >> 2, wp, panelBytes, 0, panels, ini, acc, cout, count, cout)
          o.table.requantizePixels(acc, count, zp: o.yz, lo: o.lo, hi: o.hi, y + p &* cout)
          p &+= count
        }
      }
      withExtendedLifetime((weights, unsigned, padRow, edges, pointers, sums, initial, padded)) {}
    }
  }

  /// gatherPatch for the packed path (one group): the window as unsigned
  /// bytes (`x ^ 0x80`), padding cells holding `pad` (the input zero point,
  /// flipped), and zeros up to the padded depth. Rows of the window that
  /// lie inside the image horizontally are copied as kw * cin consecutive
  /// bytes, with plain loops (a memcpy call per 3-byte tap cost more than
  /// the GEMM on a first layer).
  @inline(__always)
  static func gatherPatchUnsigned(
    _ dst: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Int8>, _ d: ConvDims, b: Int, oy: Int, ox: Int, pad: UInt8
  ) {
    let (h, w, cin, kh, kw, dh, dw) = (d.h, d.w, d.cin, d.kh, d.kw, d.dh, d.dw)
    let iy0 = oy &* d.sh &- d.padT
    let ix0 = ox &* d.sw &- d.padL
    let k = kh &* kw &* cin
    let src0 = UnsafeRawPointer(x).assumingMemoryBound(to: UInt8.self)
    if dw == 1 && ix0 >= 0 && ix0 &+ kw <= w {
      let rowLen = kw &* cin
      for i in 0..<kh {
        let iy = iy0 &+ i &* dh
        let d = dst + i &* rowLen
        if iy >= 0 && iy < h {
          let src = src0 + ((b &* h &+ iy) &* w &+ ix0) &* cin
          // Eight bytes at a time first (a 3x3 window of 3 channels: 8 + 1).
          var t = 0
          while t &+ 8 <= rowLen {
            let v = UnsafeRawPointer(src + t).loadUnaligned(as: UInt64.self) ^ 0x8080_8080_8080_8080
            UnsafeMutableRawPointer(d + t).storeBytes(of: v, as: UInt64.self)
            t &+= 8
          }
          while t < rowLen {
            d[t] = src[t] ^ 0x80
            t &+= 1
          }
        } else {
          for t in 0..<rowLen { d[t] = pad }
        }
      }
    } else {
      for i in 0..<kh {
        let iy = iy0 &+ i &* dh
        let rowInside = iy >= 0 && iy < h
        for j in 0..<kw {
          let ix = ix0 &+ j &* dw
          let d = dst + (i &* kw &+ j) &* cin
          if rowInside && ix >= 0 && ix < w {
            let src = src0 + ((b &* h &+ iy) &* w &+ ix) &* cin
            for c in 0..<cin { d[c] = src[c] ^ 0x80 }
          } else {
            for c in 0..<cin { d[c] = pad }
          }
        }
      }
    }
    var t = k
    while t & 3 != 0 {
      dst[t] = 0
      t &+= 1
    }
  }
}
