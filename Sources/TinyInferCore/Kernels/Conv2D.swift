import TinyInferShims

/// Conv2D (docs/ops.md): x [N,H,W,Cin], w [Cout,KH,KW,Cin/groups], optional
/// bias [Cout], NHWC output [N,OH,OW,Cout].
///
/// Every output pixel is a dot product of its input patch (laid out like a
/// weight row, [KH,KW,Cin/groups] per group) with each weight row. Patches of
/// four output pixels are gathered into per-thread scratch (zeros where the
/// window reads padding) and multiplied against two weight rows at a time
/// with SIMD8 accumulation. A 1x1 convolution without padding reads its
/// patches straight from the input: a matrix product.
enum Conv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try ConvFamily.infer(node, inputs, int8: false, depthwise: false)
  }

  /// The output channels (Cout) after checking the weights' layout against
  /// the input (NHWC) and the groups: shared by the float and the integer
  /// Conv2D, whatever their dtypes (ConvFamily.infer).
  static func outputChannels(_ node: Node, _ x: TensorDesc, _ w: TensorDesc) throws(TinfError) -> Int {
    guard w.shape.count == 4 else {
      throw .shape("weights '\(w.name)' must be [Cout,KH,KW,Cin/groups] (rank 4), has \(describe(w.shape))")
    }
    let cin = x.shape[3]
    let cout = w.shape[0]
    let groups = try node.attrs.int(.groups, default: 1, in: 1...(1 << 20))
    guard cin % groups == 0 else {
      throw .shape("input channels \(cin) are not divisible by groups \(groups)")
    }
    guard cout % groups == 0 else {
      throw .shape("output channels \(cout) are not divisible by groups \(groups)")
    }
    guard w.shape[3] == cin / groups else {
      throw .shape(
        "weights \(describe(w.shape)) do not match input channels \(cin) / groups \(groups) (last dim must be \(cin / groups))")
    }
    return cout
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: false)
    let groups = try ctx.attrs.int(.groups, default: 1, in: 1...(1 << 20))
    let (lo, hi) = try Activation.from(ctx.attrs).range
    // Sparse weights (chosen at load for 1x1, stride 1, one group): each
    // output pixel is its input pixel's row.
    if let s = ctx.sparse, groups == 1, d.direct, d.sh == 1, d.sw == 1, d.oh == d.h, d.ow == d.w {
      return try SparseGemm.bindFloat(
        s, x: ctx.floatIn(0), m: d.pixels, bias: ctx.optionalFloatIn(2), y: ctx.floatOut(0), lo: lo, hi: hi,
        pool: ctx.pool)
    }
    if let packed = ctx.packed, groups == 1 {
      return try bindPacked(ctx, packed, d, lo: lo, hi: hi)
    }
    let step = Tile(
      w: ctx.floatIn(1), bias: ctx.optionalFloatIn(2), groups: groups, og: d.cout / groups,
      k: d.kh &* d.kw &* (d.cin / groups), cout: d.cout, lo: lo, hi: hi)
    return try ConvDriver.general(d, groups: groups, x: ctx.floatIn(0), pad: 0, y: ctx.floatOut(0), pool: ctx.pool, step)
  }

  /// The float32 step of ConvDriver.general: the tile's four patches
  /// against two weight rows at a time (the level's C kernel `dot4x2`),
  /// plus the bias, clamped to the fused activation.
  struct Tile: ConvTile {
    let w: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?
    let groups: Int, og: Int, k: Int, cout: Int
    let lo: Float, hi: Float
    let dot = PackedGemm.kernels.dot4x2

    func prepare() {}

    // Out of line: inlined into the driver's closure, the SIMD lane reads
    // kept their range checks as calls (checked with objdump).
    @inline(never)
    func run(_ a: PatchTile<Float>, count: Int, groupStride: Int, _ y0: UnsafeMutablePointer<Float>, chunk: Int) {
      withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 4) { t in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8) { rb in
          let rows = t.baseAddress!
          let r = rb.baseAddress!
          for g in 0..<groups {
            let goff = g &* groupStride
            rows[0] = a.0 + goff
            rows[1] = a.1 + goff
            rows[2] = a.2 + goff
            rows[3] = a.3 + goff
            var j = 0
            while j < og {
              let c0 = g &* og &+ j
              let c1 = j &+ 1 < og ? c0 &+ 1 : c0
              dot(UnsafePointer(rows), w + c0 &* k, w + c1 &* k, k, r)
              let b0: Float = bias?[c0] ?? 0
              let b1: Float = bias?[c1] ?? 0
              for s in 0..<count {
                let yo = y0 + s &* cout
                yo[c0] = clampActivation(r[s] + b0, lo, hi)
                if j &+ 1 < og { yo[c1] = clampActivation(r[4 &+ s] + b1, lo, hi) }
              }
              j &+= 2
            }
          }
        }
      }
    }
  }

  /// The packed-weights path (one group): output pixels are the rows of a
  /// GEMM against weights packed at load (PackedGemm). A 1x1 convolution
  /// without padding reads its rows straight from the input; other windows
  /// are gathered (im2col) for blocks of 48 pixels into per-thread scratch.
  static func bindPacked(_ ctx: KernelContext, _ packed: PackedWeights, _ d: ConvDims, lo: Float, hi: Float)
    throws(TinfError) -> KernelFn
  {
    let (h, wIn, cin, cout, kh, kw) = (d.h, d.w, d.cin, d.cout, d.kh, d.kw)
    let (oh, ow, padT, padL, sh, sw, dh, dw) = (d.oh, d.ow, d.padT, d.padL, d.sh, d.sw, d.dh, d.dw)
    let k = kh &* kw &* cin
    let pixels = d.pixels
    let direct = d.direct
    let contiguous = direct && sh == 1 && sw == 1
    let block = 48
    // Indirect path (tiles of the level's GEMM rows: 8 at AVX-512, 6 at
    // AVX2 and on AArch64, 3 at baseline x86; window rows contiguous:
    // dw == 1): each
    // tile row reads its window's rows of kw * cin floats in place; rows
    // outside the image read zeros, rows cut by the left or right edge are
    // gathered with zeros into per-thread scratch.
    let segLen = kw &* cin
    let kern = PackedGemm.kernels
    let tileRows = kern.gemm_mr
    // Few input channels (an image's first layer: 3): the level's conv_row
    // reads each output row's windows in place, a window row of pixel r
    // at a fixed stride from the tile's first (the indirect path's table
    // of kh pointers per pixel, and its gathers of the pixels cut by an
    // edge, took a third of the time of a 3x3 stride-2 layer on 3
    // channels: 27 multiply-adds per pointer).
    let rowConv = !direct && dw == 1 && cin <= 8
    // Fewer pixels than a tile (a layer whose output is a pixel or two):
    // the gathered rows go through PackedGemm.run's one-row kernel
    // instead of a tile computing rows it does not store.
    let indirect = !rowConv && !direct && tileRows <= 8 && dw == 1 && pixels >= tileRows
    // One panel of at most 8 columns (a 1x1 convolution to 8 channels):
    // the level's taller 8-column tile (gemm_tile8).
    let tile8 = contiguous && cout <= 8 && kern.gemm_mr8 > tileRows
    let rowScratch = kh &* (7 &* sw &+ kw) &* cin
    let rowPtrs = try Scratch<UnsafePointer<Float>?>(count: rowConv ? ctx.pool.threads &* kh : 1)
    let rowEdges = try Scratch<Float>(count: rowConv ? ctx.pool.threads &* rowScratch : 1)
    let windows = IndirectWindows(
      h: h, w: wIn, cin: cin, kh: kh, kw: kw, sh: sh, sw: sw, dh: dh, padT: padT, padL: padL, pieceStride: segLen)
    // Zeros for window rows above or below the image, long enough for
    // eight pixels of a strided tile.
    let zeros = try Scratch<Float>(count: indirect ? 8 &* sw &* cin &+ segLen : 1)
    let pointers = try Scratch<UnsafePointer<Float>?>(count: indirect ? ctx.pool.threads &* 8 &* kh : 1)
    let edges = try Scratch<Float>(count: indirect ? ctx.pool.threads &* 8 &* kh &* segLen : 1)
    let scratch = try Scratch<Float>(count: direct || indirect || rowConv ? 1 : ctx.pool.threads &* block &* k)
    let x = ctx.floatIn(0)
    let bias = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let pool = ctx.pool
    let w = UnsafePointer(packed.ptr)
    let panels = (cout + PackedGemm.nr - 1) / PackedGemm.nr
    // Chunks of at least SplitGrain.gemm multiply-adds (and whole tiles).
    let minChunk = max(kern.gemm_mr, minChunkFor(perItem: k &* cout, grain: SplitGrain.gemm))
    // Rows read in place and few pixels (a 1x1 layer on an 8x8 or 4x4
    // image): the threads split the column panels instead of the pixels
    // when that leaves the busiest thread fewer tile-panel products
    // (a tile computes all its rows: 16 pixels over two threads are two
    // tiles each, against three tiles on half the panels) and each reads
    // half the weights.
    let splitPanels =
      (contiguous || direct) && !tile8
      && PackedGemm.panelsSplitBetter(pixels: pixels, panels: panels, mr: tileRows, threads: ctx.pool.threads)
    let minPanels = max(1, minChunkFor(perItem: pixels &* k &* PackedGemm.nr, grain: SplitGrain.gemm))
    return { () throws(TinfError) in
      withExtendedLifetime((packed, zeros, pointers, edges, rowPtrs, rowEdges)) {}
      if splitPanels {
        forEachChunk(pool, panels, minChunk: minPanels) { _, ps in
          if contiguous {
            PackedGemm.runStrided(
              kern, rows: 0..<pixels, a: x, lda: cin, panels: ps, k: k, n: cout, packed: w, bias: bias, lo: lo,
              hi: hi, y: y, ldy: cout)
            return
          }
          PackedGemm.run(
            kern, rows: 0..<pixels, panels: ps, k: k, n: cout, packed: w, bias: bias, lo: lo, hi: hi, y: y, ldy: cout
          ) { m in x + d.directPixel(m) &* cin }
        }
        return
      }
      forEachChunk(pool, pixels, minChunk: minChunk, align: tile8 ? kern.gemm_mr8 : tileRows) { chunk, range in
        if tile8 {
          // Tiles of gemm_mr8 rows; fewer than 4 left (one chain per row
          // would be latency bound over k: a single pixel's 1x1
          // convolution over 1280 channels) go through PackedGemm.run
          // (one row: its one-row kernel, four chains; two or three:
          // gemm_tile's six).
          let mr8 = kern.gemm_mr8
          var m = range.lowerBound
          while range.upperBound &- m >= 4 {
            let count = min(mr8, range.upperBound &- m)
            kern.gemm_tile8(x + m &* cin, cin, k, w, bias, cout, lo, hi, y + m &* cout, cout, count)
            m &+= count
          }
          if m < range.upperBound {
            PackedGemm.runStrided(
              kern, rows: m..<range.upperBound, a: x, lda: cin, panels: 0..<panels, k: k, n: cout, packed: w,
              bias: bias, lo: lo, hi: hi, y: y, ldy: cout)
          }
          return
        }
        if contiguous {
          PackedGemm.runStrided(
            kern, rows: range, a: x, lda: cin, panels: 0..<panels, k: k, n: cout, packed: w, bias: bias, lo: lo,
            hi: hi, y: y, ldy: cout)
          return
        }
        if direct {
          PackedGemm.run(
            kern, rows: range, panels: 0..<panels, k: k, n: cout, packed: w, bias: bias, lo: lo, hi: hi, y: y, ldy: cout
          ) { m in x + d.directPixel(m) &* cin }
          return
        }
        if rowConv {
          let rows = rowPtrs.base + chunk &* kh
          let edge = rowEdges.base + chunk &* rowScratch
          var cursor = PixelCursor(range.lowerBound, oh: oh, ow: ow)
          var p = range.lowerBound
          while p < range.upperBound {
            // The rest of the cursor's output row, within the chunk.
            let count = min(ow &- cursor.ox, range.upperBound &- p)
            let iy0 = cursor.oy &* sh &- padT
            for i in 0..<kh {
              let iy = iy0 &+ i &* dh
              rows[i] = iy >= 0 && iy < h ? x + (cursor.b &* h &+ iy) &* wIn &* cin : nil
            }
            kern.conv_row(
              UnsafePointer(rows), kh, wIn, cin, kw, sw, padL, cursor.ox, cursor.ox &+ count, w, panels, bias, cout, lo,
              hi, y + p &* cout, edge)
            cursor.advance(count)
            p &+= count
          }
          return
        }
        if indirect {
          let ptrs = UnsafeMutableRawPointer(pointers.base + chunk &* 8 &* kh)
            .assumingMemoryBound(to: UnsafePointer<Float>.self)
          let edge = edges.base + chunk &* 8 &* kh &* segLen
          var cursor = PixelCursor(range.lowerBound, oh: oh, ow: ow)
          var p = range.lowerBound
          while p < range.upperBound {
            let count = windows.fill(
              ptrs, &cursor, limit: range.upperBound &- p, x: x, padRow: UnsafePointer(zeros.base), edge: edge, pad: 0,
              rows: tileRows)
            kern.gemm_tile(UnsafePointer(ptrs), kh, segLen, w, 0, panels, bias, cout, lo, hi, y + p &* cout, cout, count)
            p &+= count
          }
          return
        }
        let buf = scratch.base + chunk &* block &* k
        var p = range.lowerBound
        while p < range.upperBound {
          let count = min(block, range.upperBound &- p)
          var cursor = PixelCursor(p, oh: oh, ow: ow)
          for s in 0..<count {
            d.gatherPatch(buf + s &* k, x, b: cursor.b, oy: cursor.oy, ox: cursor.ox, groups: 1, k: k, pad: 0)
            cursor.advance(1)
          }
          let src = UnsafePointer(buf)
          PackedGemm.runStrided(
            kern, rows: 0..<count, a: src, lda: k, panels: 0..<panels, k: k, n: cout, packed: w, bias: bias, lo: lo,
            hi: hi, y: y + p &* cout, ldy: cout)
          p &+= block
        }
      }
    }
  }
}
