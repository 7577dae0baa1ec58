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
    try arity(inputs, 2...3)
    let x = try required(inputs, 0, "input")
    let w = try required(inputs, 1, "weights")
    try requireFloat(x, "input")
    try requireFloat(w, "weights")
    let shape = try outputShape(node, x, w)
    try checkBias(inputs, 2, shape[3])
    _ = try Activation.from(node.attrs)
    return [TensorType(.float32, shape)]
  }

  /// The output shape [N, OH, OW, Cout] after checking the layouts, groups
  /// and window attributes: shared by the float and the integer Conv2D,
  /// whatever their dtypes.
  static func outputShape(_ node: Node, _ x: TensorDesc, _ w: TensorDesc) throws(TinfError) -> [Int] {
    try requireNHWC(x, "input")
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
    let g = try WindowGeometry(node.attrs, inputH: x.shape[1], inputW: x.shape[2], kernelH: w.shape[1], kernelW: w.shape[2])
    return [x.shape[0], g.oh, g.ow, cout]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("Conv2D: missing input") }
    let node = ctx.node
    let n = xd.shape[0]
    let h = xd.shape[1]
    let wIn = xd.shape[2]
    let cin = xd.shape[3]
    let cout = wd.shape[0]
    let kh = wd.shape[1]
    let kw = wd.shape[2]
    let groups = try node.attrs.int(.groups, default: 1, in: 1...(1 << 20))
    let cg = cin / groups
    let og = cout / groups
    let act = try Activation.from(node.attrs)
    let (lo, hi) = act.range
    let g = try WindowGeometry(node.attrs, inputH: h, inputW: wIn, kernelH: kh, kernelW: kw)
    let (oh, ow, padT, padL) = (g.oh, g.ow, g.padT, g.padL)
    let (sh, sw, dh, dw) = (g.sh, g.sw, g.dh, g.dw)
    // Patch length per group, and per pixel (all groups).
    let k = kh &* kw &* cg
    let patch = kh &* kw &* cin
    let direct = kh == 1 && kw == 1 && padT == 0 && padL == 0
    let pixels = n &* oh &* ow
    if let packed = ctx.packed, groups == 1 {
      return try bindPacked(
        ctx, packed, n: n, h: h, wIn: wIn, cin: cin, cout: cout, kh: kh, kw: kw, oh: oh, ow: ow, padT: padT,
        padL: padL, sh: sh, sw: sw, dh: dh, dw: dw, lo: lo, hi: hi)
    }
    let tile = 4
    let scratch = try Scratch<Float>(count: direct ? 1 : ctx.pool.threads &* tile &* patch)
    let x = ctx.floatIn(0)
    let wp = ctx.floatIn(1)
    let bias = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let pool = ctx.pool
    let minChunk = max(tile, minChunkFor(perItem: k &* cout))

    return { () throws(TinfError) in
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        let buf = scratch.base + chunk &* tile &* patch
        // Patch pointer of tile slot s (pixel p) for group 0.
        var pp = (x, x, x, x)
        var p = range.lowerBound
        while p < range.upperBound {
          let count = min(tile, range.upperBound &- p)
          for s in 0..<tile {
            let q = p &+ min(s, count &- 1)
            let b = q / (oh &* ow)
            let r = q &- b &* (oh &* ow)
            let oy = r / ow
            let ox = r &- oy &* ow
            let ptr: UnsafePointer<Float>
            if direct {
              ptr = x + ((b &* h &+ oy &* sh) &* wIn &+ ox &* sw) &* cin
            } else {
              let dst = buf + s &* patch
              if s < count {
                gatherPatch(
                  dst, x, b: b, iy0: oy &* sh &- padT, ix0: ox &* sw &- padL, h: h, w: wIn, cin: cin,
                  kh: kh, kw: kw, dh: dh, dw: dw, groups: groups, cg: cg, k: k)
              }
              ptr = UnsafePointer(dst)
            }
            switch s {
            case 0: pp.0 = ptr
            case 1: pp.1 = ptr
            case 2: pp.2 = ptr
            default: pp.3 = ptr
            }
          }
          // For a tile with fewer pixels, the extra slots repeat the last
          // one's patch (gathered into its own slot only when s < count).
          if !direct && count < tile {
            let last = UnsafePointer(buf + (count &- 1) &* patch)
            if count <= 1 { pp.1 = last }
            if count <= 2 { pp.2 = last }
            if count <= 3 { pp.3 = last }
          }
          let y0 = y + p &* cout
          for g in 0..<groups {
            let goff = direct ? g &* cg : g &* k
            let a0 = pp.0 + goff
            let a1 = pp.1 + goff
            let a2 = pp.2 + goff
            let a3 = pp.3 + goff
            var j = 0
            while j < og {
              let c0 = g &* og &+ j
              let c1 = j &+ 1 < og ? c0 &+ 1 : c0
              let r = dot4x2(a0, a1, a2, a3, wp + c0 &* k, wp + c1 &* k, k)
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
          p &+= tile
        }
      }
    }
  }

  /// The packed-weights path (one group): output pixels are the rows of a
  /// GEMM against weights packed at load (PackedGemm). A 1x1 convolution
  /// without padding reads its rows straight from the input; other windows
  /// are gathered (im2col) for blocks of 48 pixels into per-thread scratch.
  static func bindPacked(
    _ ctx: KernelContext, _ packed: PackedWeights, n: Int, h: Int, wIn: Int, cin: Int, cout: Int, kh: Int, kw: Int,
    oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int, dh: Int, dw: Int, lo: Float, hi: Float
  ) throws(TinfError) -> KernelFn {
    let k = kh &* kw &* cin
    let pixels = n &* oh &* ow
    let direct = kh == 1 && kw == 1 && padT == 0 && padL == 0
    let contiguous = direct && sh == 1 && sw == 1
    let block = 48
    // Indirect path (8-row tiles, window rows contiguous: dw == 1): each
    // tile row reads its window's rows of kw * cin floats in place; rows
    // outside the image read zeros, rows cut by the left or right edge are
    // gathered with zeros into per-thread scratch.
    let segLen = kw &* cin
    let indirect = !direct && PackedGemm.mr == 8 && dw == 1
    let windows = IndirectWindows(
      h: h, w: wIn, cin: cin, kh: kh, kw: kw, sh: sh, sw: sw, dh: dh, padT: padT, padL: padL, pieceStride: segLen)
    // Zeros for window rows above or below the image, long enough for
    // eight pixels of a strided tile.
    let zeros = try Scratch<Float>(count: indirect ? 8 &* sw &* cin &+ segLen : 1)
    let pointers = try Scratch<UnsafePointer<Float>?>(count: indirect ? ctx.pool.threads &* 8 &* kh : 1)
    let edges = try Scratch<Float>(count: indirect ? ctx.pool.threads &* 8 &* kh &* segLen : 1)
    let scratch = try Scratch<Float>(count: direct || indirect ? 1 : ctx.pool.threads &* block &* k)
    let x = ctx.floatIn(0)
    let bias = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let pool = ctx.pool
    let w = UnsafePointer(packed.ptr)
    let panels = (cout + PackedGemm.nr - 1) / PackedGemm.nr
    // Chunks of at least about 32K multiply-adds (and whole tiles).
    let minChunk = max(PackedGemm.mr, minChunkFor(perItem: k &* cout, grain: 1 << 15))
    return { () throws(TinfError) in
      _ = packed
      _ = zeros
      _ = pointers
      _ = edges
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        if contiguous {
          PackedGemm.run(
            rows: range, panels: 0..<panels, k: k, n: cout, packed: w, bias: bias, lo: lo, hi: hi, y: y, ldy: cout
          ) { m in x + m &* cin }
          return
        }
        if direct {
          PackedGemm.run(
            rows: range, panels: 0..<panels, k: k, n: cout, packed: w, bias: bias, lo: lo, hi: hi, y: y, ldy: cout
          ) { m in
            let b = m / (oh &* ow)
            let r = m &- b &* (oh &* ow)
            let oy = r / ow
            let ox = r &- oy &* ow
            return x + ((b &* h &+ oy &* sh) &* wIn &+ ox &* sw) &* cin
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
              ptrs, &cursor, limit: range.upperBound &- p, x: x, padRow: UnsafePointer(zeros.base), edge: edge, pad: 0)
            for pn in 0..<panels {
              PackedGemm.tile8(
                UnsafePointer(ptrs), segments: kh, segLen: segLen, panel: w + pn &* k &* PackedGemm.nr, bias: bias,
                col: pn &* PackedGemm.nr, n: cout, lo: lo, hi: hi, y: y + p &* cout, ldy: cout, rows: count)
            }
            p &+= count
          }
          return
        }
        let buf = scratch.base + chunk &* block &* k
        var p = range.lowerBound
        while p < range.upperBound {
          let count = min(block, range.upperBound &- p)
          // Pixel coordinates by counting, not dividing per pixel.
          var b = p / (oh &* ow)
          let r = p &- b &* (oh &* ow)
          var oy = r / ow
          var ox = r &- oy &* ow
          for s in 0..<count {
            gatherPatch(
              buf + s &* k, x, b: b, iy0: oy &* sh &- padT, ix0: ox &* sw &- padL, h: h, w: wIn, cin: cin,
              kh: kh, kw: kw, dh: dh, dw: dw, groups: 1, cg: cin, k: k)
            ox &+= 1
            if ox == ow {
              ox = 0
              oy &+= 1
              if oy == oh {
                oy = 0
                b &+= 1
              }
            }
          }
          let src = UnsafePointer(buf)
          PackedGemm.run(
            rows: 0..<count, panels: 0..<panels, k: k, n: cout, packed: w, bias: bias, lo: lo, hi: hi,
            y: y + p &* cout, ldy: cout
          ) { m in src + m &* k }
          p &+= block
        }
      }
    }
  }

  /// Gathers the input window of one output pixel into `dst`, laid out
  /// [groups][KH][KW][Cin/groups] (each group's part matches a weight row);
  /// cells in the padding are zeros.
  @inline(__always)
  static func gatherPatch(
    _ dst: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, b: Int, iy0: Int, ix0: Int, h: Int, w: Int,
    cin: Int, kh: Int, kw: Int, dh: Int, dw: Int, groups: Int, cg: Int, k: Int
  ) {
    if groups == 1 && dw == 1 && ix0 >= 0 && ix0 &+ kw <= w {
      // The window is inside the image horizontally: each of its rows is
      // kw * cin consecutive floats of the input.
      let rowLen = kw &* cin
      for i in 0..<kh {
        let iy = iy0 &+ i &* dh
        let d = dst + i &* rowLen
        var t = 0
        if iy >= 0 && iy < h {
          let src = x + ((b &* h &+ iy) &* w &+ ix0) &* cin
          // Vectors of 8 first (a 3x3 window of 3 channels: 8 + 1).
          while t &+ 8 <= rowLen {
            UnsafeMutableRawPointer(d + t).storeBytes(
              of: UnsafeRawPointer(src + t).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
            t &+= 8
          }
          while t < rowLen {
            d[t] = src[t]
            t &+= 1
          }
        } else {
          while t < rowLen {
            d[t] = 0
            t &+= 1
          }
        }
      }
      return
    }
    for i in 0..<kh {
      let iy = iy0 &+ i &* dh
      let rowInside = iy >= 0 && iy < h
      for j in 0..<kw {
        let ix = ix0 &+ j &* dw
        let tap = (i &* kw &+ j) &* cg
        if rowInside && ix >= 0 && ix < w {
          let src = x + ((b &* h &+ iy) &* w &+ ix) &* cin
          if groups == 1 && cin <= 16 {
            // Few channels (a first layer): a plain loop beats a memcpy call.
            let d = dst + tap
            for c in 0..<cin { d[c] = src[c] }
          } else if groups == 1 {
            (dst + tap).update(from: src, count: cin)
          } else {
            for g in 0..<groups {
              (dst + (g &* k &+ tap)).update(from: src + g &* cg, count: cg)
            }
          }
        } else {
          if groups == 1 && cin <= 16 {
            let d = dst + tap
            for c in 0..<cin { d[c] = 0 }
          } else if groups == 1 {
            (dst + tap).update(repeating: 0, count: cin)
          } else {
            for g in 0..<groups {
              (dst + (g &* k &+ tap)).update(repeating: 0, count: cg)
            }
          }
        }
      }
    }
  }
}
