import TinyInferShims

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
    try ConvFamily.infer(node, inputs, int8: true, depthwise: true)
  }

  /// What one output row needs.
  struct Params {
    let o: QConv2DKernel.Operands
    let d: ConvDims
    /// Output columns whose 3x3 window lies inside the image horizontally
    /// (with kh = kw = 3 and no dilation; else empty).
    let inside: Range<Int>
    /// An input row (W * C values) of the input zero point: the window
    /// rows above and below the image, which then contribute nothing.
    let padRow: UnsafePointer<Int8>
    /// The level's C kernel of `inside3x3` (ti_q8_kernels), fetched at bind.
    let dw3x3 = ti_q8_kernels_get().pointee.dw3x3
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: true)
    let o = try QConv2DKernel.Operands(ctx, depthwise: true)
    let (c, cm, kh, kw) = (d.cin, d.cout, d.kh, d.kw)
    let m = try ctx.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let padRow = try QBuffer(bytes: d.w &* c)
    for i in 0..<(d.w &* c) { padRow.int8[i] = Int8(truncatingIfNeeded: o.xz) }
    let p = Params(
      o: o, d: d, inside: kh == 3 && kw == 3 && d.dh == 1 && d.dw == 1 ? d.inside3 : 0..<0,
      padRow: UnsafePointer(padRow.int8))
    let pool = ctx.pool
    let minChunk = minChunkFor(perItem: d.ow &* kh &* kw &* cm, grain: 1 << 14)  // as the float kernel
    if !(m == 1 && c >= 16) {
      let accs = try QBuffer(bytes: pool.threads &* cm &* 4)
      return ConvDriver.depthwise(d, x: o.x, w: o.w, y: o.y, pool: pool, minChunk: minChunk, Taps(p: p, m: m, accs: accs))
    }
    // Per-thread 3x3 patches of window taps cut by an image edge (row16).
    let patches = try QBuffer(bytes: pool.threads &* 9 &* c)
    let rows = d.n &* d.oh
    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        for row in range {
          QDepthwiseConv2DKernel.row16(p, row, patches.int8 + chunk &* 9 &* c)
        }
      }
      withExtendedLifetime(padRow) {}
      withExtendedLifetime(patches) {}
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

  /// One output row (image b = row / OH, oy = row % OH) with M = 1, C >= 16.
  ///
  /// A 3x3 window with no dilation has a path of its own for the pixels
  /// whose window lies inside the image: the nine weight vectors stay in
  /// registers, and the zero point is folded into the bias (sum w (x - zp)
  /// = sum w x - zp sum w, exact in wrapping int32 like the sum itself).
  @inline(never)
  static func row16(_ p: Params, _ row: Int, _ patch: UnsafeMutablePointer<Int8>) {
    let c = p.d.cin
    let b = row / p.d.oh
    let oy = row &- b &* p.d.oh
    let iy0 = oy &* p.d.sh &- p.d.padT
    let (i0, i1) = windowTaps(iy0, p.d.kh, p.d.dh, p.d.h)
    let ximg = p.o.x + b &* p.d.h &* p.d.w &* c
    let yrow = p.o.y + row &* p.d.ow &* c
    let zx = SIMD16<Int16>(repeating: Int16(truncatingIfNeeded: p.o.xz))
    let zy = SIMD16<Int32>(repeating: p.o.yz)
    let rowStride = p.d.w &* c
    let tapStride = p.d.dw &* c
    // Pixels whose 3x3 window is inside the image horizontally; window rows
    // above or below the image read the row of zero points.
    let inside = p.inside
    var cb = 0
    while true {
      let rq = FixedPoint.Requant16(p.o.table, cb)
      let bv = p.o.bias.map { UnsafeRawPointer($0 + cb).loadUnaligned(as: SIMD16<Int32>.self) } ?? SIMD16<Int32>()
      let wb = UnsafeRawPointer(p.o.w + cb)
      @inline(__always) func pixel(_ ox: Int) {
        let ix0 = ox &* p.d.sw &- p.d.padL
        let (j0, j1) = windowTaps(ix0, p.d.kw, p.d.dw, p.d.w)
        var acc = bv
        if j0 < j1 {
          for i in i0..<i1 {
            let xr = UnsafeRawPointer(ximg + ((iy0 &+ i &* p.d.dh) &* rowStride &+ (ix0 &+ j0 &* p.d.dw) &* c &+ cb))
            let wr = wb + (i &* p.d.kw &+ j0) &* c
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
        UnsafeMutableRawPointer(yrow + (ox &* c &+ cb)).storeBytes(of: clampNarrow(v, p.o.lo, p.o.hi), as: SIMD16<Int8>.self)
      }
      var ox = 0
      @inline(__always) func inputRow(_ i: Int) -> UnsafePointer<Int8> {
        let iy = iy0 &+ i
        return (iy >= 0 && iy < p.d.h ? ximg + iy &* rowStride : p.padRow) + cb
      }
      // A 3x3 window cut by the left or right edge: its nine taps of these
      // 16 channels are copied, with the zero point outside the image, into
      // a patch of three rows of three pixels (pixel stride c, as in the
      // image), which inside3x3 then reads like an inside window.
      @inline(__always) func edge(_ ox: Int) {
        let ix0 = ox &* p.d.sw &- p.d.padL
        for i in 0..<3 {
          let src = inputRow(i)
          for j in 0..<3 {
            let ix = ix0 &+ j
            let d = UnsafeMutableRawPointer(patch + (i &* 3 &+ j) &* c)
            if ix >= 0 && ix < p.d.w {
              d.storeBytes(of: UnsafeRawPointer(src + ix &* c).loadUnaligned(as: SIMD16<Int8>.self), as: SIMD16<Int8>.self)
            } else {
              d.storeBytes(of: SIMD16<Int8>(repeating: Int8(truncatingIfNeeded: p.o.xz)), as: SIMD16<Int8>.self)
            }
          }
        }
        // inside3x3 starts reading at (0 * sw - padL) * c: offset the rows by padL * c.
        let r = UnsafePointer(patch) + p.d.padL &* c
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
      while ox < p.d.ow {
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
    let c = p.d.cin
    let first = (pixels.lowerBound &* p.d.sw &- p.d.padL) &* c
    withUnsafePointer(to: bias) { b in
      p.dw3x3(
        x0 + first, x1 + first, x2 + first, y + pixels.lowerBound &* c, p.o.w + cb, c, p.d.sw &* c, pixels.count,
        UnsafeRawPointer(b).assumingMemoryBound(to: Int32.self), p.o.xz, p.o.table.base + cb, p.o.table.stride,
        p.o.yz, p.o.lo, p.o.hi)
    }
  }
}
