/// int8 Conv2D and DepthwiseConv2D (the latter in QDepthwiseConv2D.swift):
/// TFLite's ConvPerChannel and DepthwiseConvPerChannel reference kernels. x int8 NHWC per tensor; weights
/// int8, symmetric (zero point 0), per channel (Conv2D along dim 0,
/// DepthwiseConv2D along dim 3) or per tensor; optional int32 bias.
/// `acc = sum w (x - zp_x) + bias` over the taps inside the image (padding
/// contributes nothing), `y = clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)`,
/// `M_c = s_x s_w[c] / s_y` computed in double.

/// Multipliers and shifts of a per-channel requantization, as tables.
struct QChannelMultipliers {
  let mult: QBuffer
  let shift: QBuffer

  init(inScale: Float, weightScales: [Float], outScale: Float, _ what: String) throws(TinfError) {
    var m: [Int32] = []
    var s: [Int32] = []
    for ws in weightScales {
      let q = try FixedPoint.requantization(Double(inScale) * Double(ws) / Double(outScale), what)
      m.append(q.multiplier)
      s.append(q.shift)
    }
    mult = try QBuffer(int32: m)
    shift = try QBuffer(int32: s)
  }
}

enum QConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...3)
    let x = try required(inputs, 0, "input")
    let w = try required(inputs, 1, "weights")
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    let shape = try Conv2DKernel.outputShape(node, x, w)
    _ = try QCheck.weights(w, channels: shape[3], axis: 0, "Conv2D")
    try QCheck.bias(inputs, 2, shape[3])
    _ = try Activation.from(node.attrs)
    return [TensorType(.int8, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("Conv2D: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let n = xd.shape[0]
    let h = xd.shape[1]
    let wIn = xd.shape[2]
    let cin = xd.shape[3]
    let cout = wd.shape[0]
    let kh = wd.shape[1]
    let kw = wd.shape[2]
    let groups = try ctx.attrs.int(.groups, default: 1, in: 1...(1 << 20))
    let cg = cin / groups
    let og = cout / groups
    let (scales, _) = try QCheck.weights(wd, channels: cout, axis: 0, "Conv2D")
    let mt = try QChannelMultipliers(inScale: xq.scale, weightScales: scales, outScale: yq.scale, "Conv2D")
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let g = try WindowGeometry(ctx.attrs, inputH: h, inputW: wIn, kernelH: kh, kernelW: kw)
    let (oh, ow, padT, padL) = (g.oh, g.ow, g.padT, g.padL)
    let (sh, sw, dh, dw) = (g.sh, g.sw, g.dh, g.dw)
    let k = kh &* kw &* cg  // weight row length
    let patch = kh &* kw &* cin
    let direct = kh == 1 && kw == 1 && padT == 0 && padL == 0
    let pixels = n &* oh &* ow

    guard let xp = ctx.inputData[0], let wpRaw = ctx.inputData[1] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let w = UnsafePointer(wpRaw.assumingMemoryBound(to: Int8.self))
    let bias: UnsafePointer<Int32>? =
      ctx.inputData.count > 2 ? ctx.inputData[2].map { UnsafePointer($0.assumingMemoryBound(to: Int32.self)) } : nil
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)
    let pool = ctx.pool
    // Patches are gathered with the input zero point in the padding, so
    // acc = sum w x - zp_x sum w needs each weight row's sum.
    let rowSums = try QBuffer(bytes: cout &* 4)
    let constantWeights = wd.isConstant
    if constantWeights {
      for c in 0..<cout { rowSums.int32[c] = sumInt8(w + c &* k, k) }
    }
    let scratch = try QBuffer(bytes: direct ? 0 : pool.threads &* patch)
    let accRows = try QBuffer(bytes: pool.threads &* cout &* 4)
    let xz = xq.zeroPoint
    let yz = yq.zeroPoint
    let padValue = Int8(truncatingIfNeeded: xz)
    let minChunk = minChunkFor(perItem: k &* cout)

    if groups == 1 && constantWeights && !direct && dw == 1 {
      return try bindIndirect(
        ctx, x: x, w: w, bias: bias, y: y, mt: mt, n: n, h: h, wIn: wIn, cin: cin, cout: cout, kh: kh, kw: kw,
        oh: oh, ow: ow, padT: padT, padL: padL, sh: sh, sw: sw, dh: dh, xz: xz, yz: yz, lo: lo, hi: hi)
    }
    if groups == 1 && constantWeights {
      return try bindPacked(
        ctx, x: x, w: w, bias: bias, y: y, mt: mt, n: n, h: h, wIn: wIn, cin: cin, cout: cout,
        kh: kh, kw: kw, oh: oh, ow: ow, padT: padT, padL: padL, sh: sh, sw: sw, dh: dh, dw: dw, xz: xz, yz: yz,
        lo: lo, hi: hi)
    }

    return { () throws(TinfError) in
      if !constantWeights {
        for c in 0..<cout { rowSums.int32[c] = sumInt8(w + c &* k, k) }
      }
      let rs = UnsafePointer(rowSums.int32)
      let mult = UnsafePointer(mt.mult.int32)
      let shift = UnsafePointer(mt.shift.int32)
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        let buf = scratch.int8 + chunk &* patch
        let accs = accRows.int32 + chunk &* cout
        for p in range {
          let b = p / (oh &* ow)
          let r = p &- b &* (oh &* ow)
          let oy = r / ow
          let ox = r &- oy &* ow
          let a: UnsafePointer<Int8>
          if direct {
            a = x + ((b &* h &+ oy &* sh) &* wIn &+ ox &* sw) &* cin
          } else {
            gatherPatch(
              buf, x, b: b, iy0: oy &* sh &- padT, ix0: ox &* sw &- padL, h: h, w: wIn, cin: cin,
              kh: kh, kw: kw, dh: dh, dw: dw, groups: groups, cg: cg, k: k, pad: padValue)
            a = UnsafePointer(buf)
          }
          for g in 0..<groups {
            let ag = a + (direct ? g &* cg : g &* k)
            @inline(__always) func finish(_ c: Int, _ dot: Int32) {
              var acc = dot &- xz &* rs[c]
              if let bias { acc &+= bias[c] }
              accs[c] = acc
            }
            var c = g &* og
            let end = c &+ og
            while c &+ 4 <= end {
              let dv = dotInt8x4(ag, w + c &* k, w + (c &+ 1) &* k, w + (c &+ 2) &* k, w + (c &+ 3) &* k, k)
              finish(c, dv[0])
              finish(c &+ 1, dv[1])
              finish(c &+ 2, dv[2])
              finish(c &+ 3, dv[3])
              c &+= 4
            }
            while c < end {
              finish(c, dotInt8(ag, w + c &* k, k))
              c &+= 1
            }
          }
          requantizeRow(accs, mult, shift, yz, lo, hi, y + p &* cout, cout)
        }
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
  static func bindPacked(
    _ ctx: KernelContext, x: UnsafePointer<Int8>, w: UnsafePointer<Int8>, bias: UnsafePointer<Int32>?,
    y: UnsafeMutablePointer<Int8>, mt: QChannelMultipliers, n: Int, h: Int, wIn: Int, cin: Int,
    cout: Int, kh: Int, kw: Int, oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int, dh: Int, dw: Int,
    xz: Int32, yz: Int32, lo: Int32, hi: Int32
  ) throws(TinfError) -> KernelFn {
    let k = kh &* kw &* cin
    let k4 = QPackedGemm.paddedDepth(k)
    let pixels = n &* oh &* ow
    let direct = kh == 1 && kw == 1 && padT == 0 && padL == 0
    let contiguous = direct && sh == 1 && sw == 1 && k == k4
    let block = 48
    let pool = ctx.pool
    let weights = try QPackedGemm.Weights(w, n: cout, k: k)
    let initial = try Scratch<Int32>(count: weights.panels &* QPackedGemm.nr)
    let rows = try Scratch<UInt8>(count: pool.threads &* block &* k4)
    let sums = try Scratch<Int32>(count: pool.threads &* block &* cout)
    let padValue = Int8(truncatingIfNeeded: xz)
    // Chunks of at least about 32K multiply-adds (and whole tiles), as the float Conv2D.
    let minChunk = max(QPackedGemm.mr, minChunkFor(perItem: k &* cout, grain: 1 << 15))
    let offset = 128 &+ xz
    let table = try QRequantTable(multipliers: mt.mult.int32, shifts: mt.shift.int32, count: cout, periodic: true)
    return { () throws(TinfError) in
      for c in 0..<cout {
        initial.base[c] = (bias?[c] ?? 0) &- offset &* weights.colSums.base[c]
      }
      let ini = UnsafePointer(initial.base)
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        let buf = rows.base + chunk &* block &* k4
        let acc = sums.base + chunk &* block &* cout
        var p = range.lowerBound
        while p < range.upperBound {
          let count = min(block, range.upperBound &- p)
          var b = p / (oh &* ow)
          let r = p &- b &* (oh &* ow)
          var oy = r / ow
          var ox = r &- oy &* ow
          // A stride-1 1x1 convolution with a depth that is a multiple of
          // four: the block's rows are consecutive input bytes.
          let rowsInPlace = contiguous ? count : 0
          if contiguous { QPackedGemm.toUnsigned(x + p &* cin, buf, count &* k) }
          for s in rowsInPlace..<count {
            let row = buf + s &* k4
            if direct {
              let src = x + ((b &* h &+ oy &* sh) &* wIn &+ ox &* sw) &* cin
              QPackedGemm.toUnsigned(src, row, k)
            } else {
              gatherPatchUnsigned(
                row, x, b: b, iy0: oy &* sh &- padT, ix0: ox &* sw &- padL, h: h, w: wIn, cin: cin, kh: kh, kw: kw,
                dh: dh, dw: dw, k: k, pad: UInt8(bitPattern: padValue) ^ 0x80)
            }
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
          QPackedGemm.run(
            rows: count, a: UnsafePointer(buf), lda: k4, weights: weights, initial: ini, acc: acc, ldo: cout)
          table.requantizePixels(acc, count, zp: yz, lo: lo, hi: hi, y + p &* cout)
          p &+= block
        }
      }
      _ = weights
      _ = rows
      _ = sums
      _ = initial
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
  static func bindIndirect(
    _ ctx: KernelContext, x: UnsafePointer<Int8>, w: UnsafePointer<Int8>, bias: UnsafePointer<Int32>?,
    y: UnsafeMutablePointer<Int8>, mt: QChannelMultipliers, n: Int, h: Int, wIn: Int, cin: Int,
    cout: Int, kh: Int, kw: Int, oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int, dh: Int,
    xz: Int32, yz: Int32, lo: Int32, hi: Int32
  ) throws(TinfError) -> KernelFn {
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
    let pixels = n &* oh &* ow
    let pool = ctx.pool
    let inputBytes = n &* h &* wIn &* cin
    let unsigned = try Scratch<UInt8>(count: inputBytes &+ 64)
    let pad = UInt8(bitPattern: Int8(truncatingIfNeeded: xz)) ^ 0x80
    let padRowLength = 8 &* sw &* cin &+ seg4 &+ 64
    let padRow = try Scratch<UInt8>(count: padRowLength)
    for i in 0..<padRowLength { padRow.base[i] = pad }
    let edges = try Scratch<UInt8>(count: pool.threads &* 8 &* kh &* seg4)
    let pointers = try Scratch<UnsafePointer<UInt8>?>(count: pool.threads &* 8 &* kh)
    let windows = IndirectWindows(
      h: h, w: wIn, cin: cin, kh: kh, kw: kw, sh: sh, sw: sw, dh: dh, padT: padT, padL: padL, pieceStride: seg4)
    let sums = try Scratch<Int32>(count: pool.threads &* 8 &* cout)
    let initial = try Scratch<Int32>(count: panels &* QPackedGemm.nr)
    let table = try QRequantTable(multipliers: mt.mult.int32, shifts: mt.shift.int32, count: cout, periodic: true)
    let minChunk = max(QPackedGemm.mr, minChunkFor(perItem: k &* cout, grain: 1 << 15))
    let offset = 128 &+ xz
    return { () throws(TinfError) in
      for c in 0..<cout {
        initial.base[c] = (bias?[c] ?? 0) &- offset &* weights.colSums.base[c]
      }
      QPackedGemm.toUnsigned(x, unsigned.base, inputBytes)
      let ini = UnsafePointer(initial.base)
      let wp = UnsafeRawPointer(weights.data.base)
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
          for pn in 0..<panels {
            QPackedGemm.tile8(
              UnsafePointer(ptrs), kh, seg4 >> 2, wp + pn &* panelBytes, ini + pn &* QPackedGemm.nr,
              acc + pn &* QPackedGemm.nr, ldo: cout, rows: count, valid: min(QPackedGemm.nr, cout &- pn &* QPackedGemm.nr))
          }
          table.requantizePixels(acc, count, zp: yz, lo: lo, hi: hi, y + p &* cout)
          p &+= count
        }
      }
      _ = weights
      _ = unsigned
      _ = padRow
      _ = edges
      _ = pointers
      _ = sums
      _ = initial
      _ = padded
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
    _ dst: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Int8>, b: Int, iy0: Int, ix0: Int, h: Int, w: Int,
    cin: Int, kh: Int, kw: Int, dh: Int, dw: Int, k: Int, pad: UInt8
  ) {
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

  /// Gathers the input window of one output pixel into `dst`, laid out
  /// [groups][KH][KW][Cin/groups] like the weight rows; cells in the padding
  /// hold `pad` (the input zero point, so they contribute nothing).
  @inline(__always)
  static func gatherPatch(
    _ dst: UnsafeMutablePointer<Int8>, _ x: UnsafePointer<Int8>, b: Int, iy0: Int, ix0: Int, h: Int, w: Int,
    cin: Int, kh: Int, kw: Int, dh: Int, dw: Int, groups: Int, cg: Int, k: Int, pad: Int8
  ) {
    for i in 0..<kh {
      let iy = iy0 &+ i &* dh
      let rowInside = iy >= 0 && iy < h
      for j in 0..<kw {
        let ix = ix0 &+ j &* dw
        let tap = (i &* kw &+ j) &* cg
        if rowInside && ix >= 0 && ix < w {
          let src = x + ((b &* h &+ iy) &* w &+ ix) &* cin
          if groups == 1 {
            (dst + tap).update(from: src, count: cin)
          } else {
            for g in 0..<groups { (dst + (g &* k &+ tap)).update(from: src + g &* cg, count: cg) }
          }
        } else {
          if groups == 1 {
            (dst + tap).update(repeating: pad, count: cin)
          } else {
            for g in 0..<groups { (dst + (g &* k &+ tap)).update(repeating: pad, count: cg) }
          }
        }
      }
    }
  }
}
