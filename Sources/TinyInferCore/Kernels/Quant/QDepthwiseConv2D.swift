/// int8 DepthwiseConv2D: TFLite's DepthwiseConvPerChannel reference kernel
/// (see QConv.swift for the parameters). Output channel c*M+m reads input
/// channel c; `acc = sum w (x - zp_x) + bias` over the taps inside the image
/// (padding contributes nothing), then per channel
/// `y = clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)`.
///
/// Depth multiplier 1 with at least 16 channels: channels in blocks of 16
/// (the last block overlaps the one before when C is not a multiple of 16),
/// each output pixel accumulating its taps in a SIMD16<Int32> register
/// ((x - zp_x) w is exact in int16: |.| <= 255 * 128) and requantized on
/// 16 lanes (FixedPointVector.swift). Otherwise each pixel's accumulators go
/// through a scratch row, element by element, and are requantized 16 at a
/// time. Work is split over output rows. A 3x3 window has a faster path
/// for the pixels whose window is inside the image (`inside3x3`).
enum QDepthwiseConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...3)
    let x = try required(inputs, 0, "input")
    let w = try required(inputs, 1, "weights")
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    let shape = try DepthwiseConv2DKernel.outputShape(node, x, w)
    _ = try QCheck.weights(w, channels: shape[3], axis: 3, "DepthwiseConv2D")
    try QCheck.bias(inputs, 2, shape[3])
    _ = try Activation.from(node.attrs)
    return [TensorType(.int8, shape)]
  }

  /// What one output row needs.
  struct Params {
    let x: UnsafePointer<Int8>
    let w: UnsafePointer<Int8>
    let bias: UnsafePointer<Int32>?
    let y: UnsafeMutablePointer<Int8>
    let mult: UnsafePointer<Int32>
    let shift: UnsafePointer<Int32>
    let requant: QRequantTable
    let h: Int, wIn: Int, c: Int, m: Int, kh: Int, kw: Int
    let oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int, dh: Int, dw: Int
    let xz: Int32, yz: Int32, lo: Int32, hi: Int32
    /// An input row (wIn * c values) of the input zero point: the window
    /// rows above and below the image, which then contribute nothing.
    let padRow: UnsafePointer<Int8>
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("DepthwiseConv2D: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let n = xd.shape[0]
    let h = xd.shape[1]
    let wIn = xd.shape[2]
    let c = xd.shape[3]
    let kh = wd.shape[1]
    let kw = wd.shape[2]
    let m = try ctx.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let cm = c &* m
    let (scales, _) = try QCheck.weights(wd, channels: cm, axis: 3, "DepthwiseConv2D")
    let mt = try QChannelMultipliers(inScale: xq.scale, weightScales: scales, outScale: yq.scale, "DepthwiseConv2D")
    let table = try QRequantTable(multipliers: mt.mult.int32, shifts: mt.shift.int32, count: cm)
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let g = try WindowGeometry(ctx.attrs, inputH: h, inputW: wIn, kernelH: kh, kernelW: kw)
    let padRow = try QBuffer(bytes: wIn &* c)
    for i in 0..<(wIn &* c) { padRow.int8[i] = Int8(truncatingIfNeeded: xq.zeroPoint) }
    guard let xp = ctx.inputData[0], let wpRaw = ctx.inputData[1] else { throw TinfError(.internal, "missing data") }
    let bias: UnsafePointer<Int32>? =
      ctx.inputData.count > 2 ? ctx.inputData[2].map { UnsafePointer($0.assumingMemoryBound(to: Int32.self)) } : nil
    let p = Params(
      x: UnsafePointer(xp.assumingMemoryBound(to: Int8.self)), w: UnsafePointer(wpRaw.assumingMemoryBound(to: Int8.self)),
      bias: bias, y: ctx.outputData[0].assumingMemoryBound(to: Int8.self), mult: UnsafePointer(mt.mult.int32),
      shift: UnsafePointer(mt.shift.int32), requant: table, h: h, wIn: wIn, c: c, m: m, kh: kh, kw: kw, oh: g.oh,
      ow: g.ow, padT: g.padT, padL: g.padL, sh: g.sh, sw: g.sw, dh: g.dh, dw: g.dw, xz: xq.zeroPoint,
      yz: yq.zeroPoint, lo: lo, hi: hi, padRow: UnsafePointer(padRow.int8))
    let pool = ctx.pool
    let accs = try QBuffer(bytes: pool.threads &* cm &* 4)
    // Per-thread 3x3 patches of window taps cut by an image edge (row16).
    let patches = try QBuffer(bytes: pool.threads &* 9 &* c)
    let rows = n &* g.oh
    let minChunk = minChunkFor(perItem: g.ow &* kh &* kw &* cm, grain: 1 << 14)  // as the float kernel
    let vector = m == 1 && c >= 16

    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        for row in range {
          if vector {
            QDepthwiseConv2DKernel.row16(p, row, patches.int8 + chunk &* 9 &* c)
          } else {
            QDepthwiseConv2DKernel.rowGeneral(p, row, accs.int32 + chunk &* cm)
          }
        }
      }
      withExtendedLifetime(mt) {}
      withExtendedLifetime(padRow) {}
      withExtendedLifetime(patches) {}
    }
  }

  /// One output row (image b = row / OH, oy = row % OH) with M = 1, C >= 16.
  ///
  /// A 3x3 window with no dilation has a path of its own for the pixels
  /// whose window lies inside the image: the nine weight vectors stay in
  /// registers, and the zero point is folded into the bias (sum w (x - zp)
  /// = sum w x - zp sum w, exact in wrapping int32 like the sum itself).
  @inline(never)
  static func row16(_ p: Params, _ row: Int, _ patch: UnsafeMutablePointer<Int8>) {
    let c = p.c
    let b = row / p.oh
    let oy = row &- b &* p.oh
    let iy0 = oy &* p.sh &- p.padT
    let (i0, i1) = taps(iy0, p.kh, p.dh, p.h)
    let ximg = p.x + b &* p.h &* p.wIn &* c
    let yrow = p.y + row &* p.ow &* c
    let zx = SIMD16<Int16>(repeating: Int16(truncatingIfNeeded: p.xz))
    let zy = SIMD16<Int32>(repeating: p.yz)
    let rowStride = p.wIn &* c
    let tapStride = p.dw &* c
    // Pixels whose 3x3 window is inside the image horizontally; window rows
    // above or below the image read the row of zero points.
    var inside = 0..<0
    if p.kh == 3 && p.kw == 3 && p.dh == 1 && p.dw == 1 {
      let first = (p.padL &+ p.sw &- 1) / p.sw
      let end = p.wIn &- 3 &+ p.padL >= 0 ? min(p.ow, (p.wIn &- 3 &+ p.padL) / p.sw &+ 1) : 0
      if first < end { inside = first..<end }
    }
    var cb = 0
    while true {
      let rq = FixedPoint.Requant16(p.requant, cb)
      let bv = p.bias.map { UnsafeRawPointer($0 + cb).loadUnaligned(as: SIMD16<Int32>.self) } ?? SIMD16<Int32>()
      let wb = UnsafeRawPointer(p.w + cb)
      @inline(__always) func pixel(_ ox: Int) {
        let ix0 = ox &* p.sw &- p.padL
        let (j0, j1) = taps(ix0, p.kw, p.dw, p.wIn)
        var acc = bv
        if j0 < j1 {
          for i in i0..<i1 {
            let xr = UnsafeRawPointer(ximg + ((iy0 &+ i &* p.dh) &* rowStride &+ (ix0 &+ j0 &* p.dw) &* c &+ cb))
            let wr = wb + (i &* p.kw &+ j0) &* c
            var xo = 0
            var wo = 0
            for _ in j0..<j1 {
              let xv = loadInt8x16(xr, xo) &- zx
              acc &+= widen(xv &* loadInt8x16(wr, wo))
              xo &+= tapStride
              wo &+= c
            }
          }
        }
        let v = FixedPoint.mul(acc, rq) &+ zy
        UnsafeMutableRawPointer(yrow + (ox &* c &+ cb)).storeBytes(of: clampNarrow(v, p.lo, p.hi), as: SIMD16<Int8>.self)
      }
      var ox = 0
      @inline(__always) func inputRow(_ i: Int) -> UnsafePointer<Int8> {
        let iy = iy0 &+ i
        return (iy >= 0 && iy < p.h ? ximg + iy &* rowStride : p.padRow) + cb
      }
      // A 3x3 window cut by the left or right edge: its nine taps of these
      // 16 channels are copied, with the zero point outside the image, into
      // a patch of three rows of three pixels (pixel stride c, as in the
      // image), which inside3x3 then reads like an inside window.
      @inline(__always) func edge(_ ox: Int) {
        let ix0 = ox &* p.sw &- p.padL
        for i in 0..<3 {
          let src = inputRow(i)
          for j in 0..<3 {
            let ix = ix0 &+ j
            let d = UnsafeMutableRawPointer(patch + (i &* 3 &+ j) &* c)
            if ix >= 0 && ix < p.wIn {
              d.storeBytes(of: UnsafeRawPointer(src + ix &* c).loadUnaligned(as: SIMD16<Int8>.self), as: SIMD16<Int8>.self)
            } else {
              d.storeBytes(of: SIMD16<Int8>(repeating: Int8(truncatingIfNeeded: p.xz)), as: SIMD16<Int8>.self)
            }
          }
        }
        // inside3x3 starts reading at (0 * sw - padL) * c: offset the rows by padL * c.
        let r = UnsafePointer(patch) + p.padL &* c
        inside3x3(p, r, r + 3 &* c, r + 6 &* c, yrow + (ox &* c &+ cb), bv, rq, cb, 0..<1)
      }
      let edges3x3 = !inside.isEmpty
      while ox < inside.lowerBound {
        if edges3x3 { edge(ox) } else { pixel(ox) }
        ox &+= 1
      }
      if !inside.isEmpty {
        inside3x3(p, inputRow(0), inputRow(1), inputRow(2), yrow + cb, bv, rq, cb, inside)
        ox = inside.upperBound
      }
      while ox < p.ow {
        if edges3x3 { edge(ox) } else { pixel(ox) }
        ox &+= 1
      }
      if cb &+ 16 == c { break }
      cb = min(cb &+ 16, c &- 16)  // the last block may overlap the previous one
    }
  }

  /// The pixels `pixels` of a row of a 3x3, dilation-1 window inside the
  /// image horizontally, for the 16 channels at `cb`: `x0...x2` point at
  /// channel cb of the window rows' first input pixel (column 0; a row of
  /// zero points where the window is above or below the image), `y` at
  /// channel cb of the output row.
  @inline(never)
  static func inside3x3(
    _ p: Params, _ x0: UnsafePointer<Int8>, _ x1: UnsafePointer<Int8>, _ x2: UnsafePointer<Int8>,
    _ y: UnsafeMutablePointer<Int8>, _ bias: SIMD16<Int32>, _ rq: FixedPoint.Requant16, _ cb: Int,
    _ pixels: Range<Int>
  ) {
    let c = p.c
    let wb = UnsafeRawPointer(p.w + cb)
    let w0 = loadInt8x16(wb, 0), w1 = loadInt8x16(wb, c), w2 = loadInt8x16(wb, 2 &* c)
    let w3 = loadInt8x16(wb, 3 &* c), w4 = loadInt8x16(wb, 4 &* c), w5 = loadInt8x16(wb, 5 &* c)
    let w6 = loadInt8x16(wb, 6 &* c), w7 = loadInt8x16(wb, 7 &* c), w8 = loadInt8x16(wb, 8 &* c)
    // |sum w| <= 9 * 128: exact in int16.
    let wsum = widen(w0 &+ w1 &+ w2 &+ w3 &+ w4 &+ w5 &+ w6 &+ w7 &+ w8)
    let b0 = bias &- wsum &* SIMD16<Int32>(repeating: p.xz)
    let zy = SIMD16<Int32>(repeating: p.yz)
    let step = p.sw &* c
    let first = (pixels.lowerBound &* p.sw &- p.padL) &* c
    var xp = UnsafeRawPointer(x0 + first)
    var xq = UnsafeRawPointer(x1 + first)
    var xr = UnsafeRawPointer(x2 + first)
    // x w with x, w in [-128, 127] fits int16 (the largest, 2^14, is (-128)^2).
    for ox in pixels {
      var acc = b0
      acc &+= widen(loadInt8x16(xp, 0) &* w0)
      acc &+= widen(loadInt8x16(xp, c) &* w1)
      acc &+= widen(loadInt8x16(xp, 2 &* c) &* w2)
      acc &+= widen(loadInt8x16(xq, 0) &* w3)
      acc &+= widen(loadInt8x16(xq, c) &* w4)
      acc &+= widen(loadInt8x16(xq, 2 &* c) &* w5)
      acc &+= widen(loadInt8x16(xr, 0) &* w6)
      acc &+= widen(loadInt8x16(xr, c) &* w7)
      acc &+= widen(loadInt8x16(xr, 2 &* c) &* w8)
      let v = FixedPoint.mul(acc, rq) &+ zy
      UnsafeMutableRawPointer(y + ox &* c).storeBytes(of: clampNarrow(v, p.lo, p.hi), as: SIMD16<Int8>.self)
      xp += step
      xq += step
      xr += step
    }
  }

  /// The taps k in 0..<k1 of a window starting at `start` (stride `d`) that
  /// fall inside 0..<size.
  @inline(__always)
  static func taps(_ start: Int, _ k: Int, _ d: Int, _ size: Int) -> (Int, Int) {
    let k0 = start >= 0 ? 0 : min(k, (0 &- start &+ d &- 1) / d)
    let k1 = start &+ (k &- 1) &* d < size ? k : max(k0, (size &- start &+ d &- 1) / d)
    return (k0, k1)
  }

  /// One output row in general (any depth multiplier, any channel count):
  /// accumulators in `acc`, requantized 16 at a time.
  @inline(never)
  static func rowGeneral(_ p: Params, _ row: Int, _ acc: UnsafeMutablePointer<Int32>) {
    let c = p.c
    let m = p.m
    let cm = c &* m
    let b = row / p.oh
    let oy = row &- b &* p.oh
    let iy0 = oy &* p.sh &- p.padT
    let (i0, i1) = taps(iy0, p.kh, p.dh, p.h)
    let ximg = p.x + b &* p.h &* p.wIn &* c
    for ox in 0..<p.ow {
      let ix0 = ox &* p.sw &- p.padL
      let (j0, j1) = taps(ix0, p.kw, p.dw, p.wIn)
      if let bias = p.bias {
        acc.update(from: bias, count: cm)
      } else {
        acc.update(repeating: 0, count: cm)
      }
      if j0 < j1 {
        for i in i0..<i1 {
          for j in j0..<j1 {
            let xs = ximg + ((iy0 &+ i &* p.dh) &* p.wIn &+ ix0 &+ j &* p.dw) &* c
            let ws = p.w + (i &* p.kw &+ j) &* cm
            var o = 0
            for ch in 0..<c {
              let v = Int32(xs[ch]) &- p.xz
              for _ in 0..<m {
                acc[o] &+= Int32(ws[o]) &* v
                o &+= 1
              }
            }
          }
        }
      }
      requantizeRow16(acc, p, p.y + (row &* p.ow &+ ox) &* cm, cm)
    }
  }

  /// y[i] = clamp(MultiplyByQuantizedMultiplier(acc[i], M_i) + zp_y) for
  /// i < n: 16 lanes at a time (the last block overlapping when n is not a
  /// multiple of 16), element by element below 16.
  @inline(__always)
  static func requantizeRow16(_ acc: UnsafeMutablePointer<Int32>, _ p: Params, _ y: UnsafeMutablePointer<Int8>, _ n: Int) {
    if n < 16 {
      for i in 0..<n { y[i] = requantize(acc[i], p.mult[i], p.shift[i], p.yz, p.lo, p.hi) }
      return
    }
    let zy = SIMD16<Int32>(repeating: p.yz)
    var i = 0
    while true {
      let a = UnsafeRawPointer(acc + i).loadUnaligned(as: SIMD16<Int32>.self)
      let v = FixedPoint.mul(a, FixedPoint.Requant16(p.requant, i)) &+ zy
      UnsafeMutableRawPointer(y + i).storeBytes(of: clampNarrow(v, p.lo, p.hi), as: SIMD16<Int8>.self)
      if i &+ 16 == n { break }
      i = min(i &+ 16, n &- 16)
    }
  }
}
