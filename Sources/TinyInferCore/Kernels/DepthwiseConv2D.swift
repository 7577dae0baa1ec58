import TinyInferShims

/// DepthwiseConv2D (docs/ops.md): x [N,H,W,C], w [1,KH,KW,C*M], optional
/// bias [C*M]; output channel c*M+m reads input channel c.
///
/// Each output pixel starts as the bias and accumulates, tap by tap, the
/// input pixel times the weight tap: with M = 1 a contiguous multiply-add
/// over the channels. Work is split over output rows.
enum DepthwiseConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try ConvFamily.infer(node, inputs, int8: false, depthwise: true)
  }

  /// The output channels (C*M) after checking the weights' layout against
  /// the input (NHWC) and the depth multiplier: shared by the float and
  /// integer kernels (ConvFamily.infer).
  static func outputChannels(_ node: Node, _ x: TensorDesc, _ w: TensorDesc) throws(TinfError) -> Int {
    let c = x.shape[3]
    let m = try node.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let cm = c * m  // c <= 2^32, m <= 2^20: no overflow
    guard w.shape.count == 4, w.shape[0] == 1, w.shape[3] == cm else {
      throw .shape(
        "weights '\(w.name)' must be [1,KH,KW,\(cm)] (channels \(c) x depth_multiplier \(m)), has \(describe(w.shape))")
    }
    return cm
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: true)
    let (n, h, wIn, c, kh, kw) = (d.n, d.h, d.w, d.cin, d.kh, d.kw)
    let m = try ctx.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let cm = d.cout
    let act = try Activation.from(ctx.attrs)
    let (lo, hi) = act.range
    let (oh, ow, padT, padL) = (d.oh, d.ow, d.padT, d.padL)
    let (sh, sw, dh, dw) = (d.sh, d.sw, d.dh, d.dw)
    let (x, wp, bias, y) = (ctx.floatIn(0), ctx.floatIn(1), ctx.optionalFloatIn(2), ctx.floatOut(0))
    let pool = ctx.pool
    let rows = n &* oh
    // Rows are split between threads from about 16K multiply-adds each:
    // with workers polling between ops, a split costs about a microsecond,
    // and the 8x8 layers of a small network are worth splitting.
    let minChunk = minChunkFor(perItem: ow &* kh &* kw &* cm, grain: 1 << 14)

    if m == 1 {
      // A 3x3 window with no dilation and channels in multiples of 8 has a
      // kernel of its own for the pixels whose window is inside the image.
      let fast3x3 = kh == 3 && kw == 3 && dh == 1 && dw == 1 && c % 8 == 0
      let interior = d.inside3
      let zeroRow = try Scratch<Float>(count: fast3x3 ? wIn &* c : 1)
      // Channels in registers: each output pixel accumulates its taps for
      // 16 channels at a time and is stored once.
      return { () throws(TinfError) in
        _ = zeroRow
        forEachChunk(pool, rows, minChunk: minChunk) { _, range in
          for row in range {
            let b = row / oh
            let oy = row &- b &* oh
            let iy0 = oy &* sh &- padT
            let yrow = y + row &* ow &* c
            let ximg = x + b &* h &* wIn &* c
            if fast3x3 && interior.lowerBound < interior.upperBound {
              // Border pixels the general way, the inside with the 3x3
              // kernel; window rows above or below the image read a row of
              // zeros.
              @inline(__always) func inputRow(_ i: Int) -> UnsafePointer<Float> {
                let iy = iy0 &+ i
                return iy >= 0 && iy < h ? ximg + iy &* wIn &* c : UnsafePointer(zeroRow.base)
              }
              depthwiseRow(
                yrow, ximg, wp, bias, c: c, h: h, w: wIn, ow: ow, kh: kh, kw: kw, iy0: iy0, padL: padL, sw: sw,
                dh: dh, dw: dw, lo: lo, hi: hi, pixels: 0..<interior.lowerBound)
              depthwise3x3(
                yrow, inputRow(0), inputRow(1), inputRow(2), wp, bias, c: c, padL: padL, sw: sw, lo: lo, hi: hi,
                pixels: interior)
              depthwiseRow(
                yrow, ximg, wp, bias, c: c, h: h, w: wIn, ow: ow, kh: kh, kw: kw, iy0: iy0, padL: padL, sw: sw,
                dh: dh, dw: dw, lo: lo, hi: hi, pixels: interior.upperBound..<ow)
            } else {
              depthwiseRow(
                yrow, ximg, wp, bias, c: c, h: h, w: wIn, ow: ow, kh: kh, kw: kw, iy0: iy0, padL: padL, sw: sw,
                dh: dh, dw: dw, lo: lo, hi: hi)
            }
          }
        }
      }
    }

    return ConvDriver.depthwise(
      d, x: x, w: wp, y: y, pool: pool, minChunk: minChunk, Taps(bias: bias, c: c, m: m, act: act, lo: lo, hi: hi))
  }

  /// The float32 step of ConvDriver.depthwise: the output pixel accumulates
  /// in place from the bias, then is clamped to the fused activation.
  struct Taps: DepthwiseTaps {
    let bias: UnsafePointer<Float>?
    let c: Int, m: Int
    let act: Activation
    let lo: Float, hi: Float

    @inline(__always)
    func begin(_ y: UnsafeMutablePointer<Float>, chunk: Int) -> UnsafeMutablePointer<Float> {
      fillBias(y, bias, c &* m, c &* m)
      return y
    }

    @inline(__always)
    func tap(_ acc: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>) {
      var o = 0
      for ch in 0..<c {
        let v = x[ch]
        for _ in 0..<m {
          acc[o] += v * w[o]
          o &+= 1
        }
      }
    }

    @inline(__always)
    func finish(_ acc: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
      clampRange(y, c &* m, act, lo, hi)
    }
  }

  /// One output row of a depth-multiplier-1 depthwise convolution: channels
  /// in blocks of 16 (SIMD16), then 8 (SIMD8), then one at a time; each
  /// output pixel accumulates its taps in registers and is stored once. Kept
  /// out of line so that LLVM keeps the accumulators in registers (checked
  /// with objdump: vfmadd231ps).
  @inline(never)
  static func depthwiseRow(
    _ yrow: UnsafeMutablePointer<Float>, _ ximg: UnsafePointer<Float>, _ wp: UnsafePointer<Float>,
    _ bias: UnsafePointer<Float>?, c: Int, h: Int, w: Int, ow: Int, kh: Int, kw: Int, iy0: Int, padL: Int, sw: Int,
    dh: Int, dw: Int, lo: Float, hi: Float, pixels: Range<Int>? = nil
  ) {
    // Taps inside the image for this row (the same for every pixel).
    let (i0, i1) = windowTaps(iy0, kh, dh, h)
    let full16 = c / 16 * 16
    let full8 = full16 &+ (c &- full16 >= 8 ? 8 : 0)
    for ox in pixels ?? 0..<ow {
      let yo = yrow + ox &* c
      let ix0 = ox &* sw &- padL
      let (j0, j1) = windowTaps(ix0, kw, dw, w)
      var cb = 0
      while cb < full16 {
        var acc = SIMD16<Float>(repeating: 0)
        if let bias { acc = UnsafeRawPointer(bias + cb).loadUnaligned(as: SIMD16<Float>.self) }
        for i in i0..<i1 {
          let xr = ximg + ((iy0 &+ i &* dh) &* w &* c &+ cb)
          let wr = wp + (i &* kw &* c &+ cb)
          for j in j0..<j1 {
            let xv = UnsafeRawPointer(xr + (ix0 &+ j &* dw) &* c).loadUnaligned(as: SIMD16<Float>.self)
            let wv = UnsafeRawPointer(wr + j &* c).loadUnaligned(as: SIMD16<Float>.self)
            acc.addProduct(xv, wv)
          }
        }
        UnsafeMutableRawPointer(yo + cb).storeBytes(of: acc, as: SIMD16<Float>.self)
        cb &+= 16
      }
      if cb < full8 {
        var acc = SIMD8<Float>(repeating: 0)
        if let bias { acc = UnsafeRawPointer(bias + cb).loadUnaligned(as: SIMD8<Float>.self) }
        for i in i0..<i1 {
          let xr = ximg + ((iy0 &+ i &* dh) &* w &* c &+ cb)
          let wr = wp + (i &* kw &* c &+ cb)
          for j in j0..<j1 {
            let xv = UnsafeRawPointer(xr + (ix0 &+ j &* dw) &* c).loadUnaligned(as: SIMD8<Float>.self)
            let wv = UnsafeRawPointer(wr + j &* c).loadUnaligned(as: SIMD8<Float>.self)
            acc.addProduct(xv, wv)
          }
        }
        UnsafeMutableRawPointer(yo + cb).storeBytes(of: acc, as: SIMD8<Float>.self)
        cb &+= 8
      }
      while cb < c {
        var acc: Float = bias?[cb] ?? 0
        for i in i0..<i1 {
          for j in j0..<j1 {
            acc += ximg[(iy0 &+ i &* dh) &* w &* c &+ (ix0 &+ j &* dw) &* c &+ cb] * wp[(i &* kw &+ j) &* c &+ cb]
          }
        }
        yo[cb] = acc
        cb &+= 1
      }
      var l = 0
      while l < c {
        let t = yo[l]
        yo[l] = t < lo ? lo : (t > hi ? hi : t)
        l &+= 1
      }
    }
  }

  /// Pixels `pixels` of one output row of a 3x3, dilation-1, multiplier-1
  /// depthwise convolution whose windows lie inside the image horizontally
  /// (c a multiple of 8). `row0...row2` are the three input rows of the
  /// window (column 0), or a row of zeros where the window is above or
  /// below the image. For each block of 16 (then 8) channels the nine
  /// weight vectors and the bias stay in registers while the pixels stream
  /// past; the fused activation is applied in registers.
  @inline(never)
  static func depthwise3x3(
    _ yrow: UnsafeMutablePointer<Float>, _ row0: UnsafePointer<Float>, _ row1: UnsafePointer<Float>,
    _ row2: UnsafePointer<Float>, _ wp: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, c: Int, padL: Int,
    sw: Int, lo: Float, hi: Float, pixels: Range<Int>
  ) {
    let full16 = c / 16 * 16
    var cb = 0
    while cb < full16 {
      @inline(__always) func wv(_ t: Int) -> SIMD16<Float> {
        UnsafeRawPointer(wp + (t &* c &+ cb)).loadUnaligned(as: SIMD16<Float>.self)
      }
      let w0 = wv(0), w1 = wv(1), w2 = wv(2), w3 = wv(3), w4 = wv(4), w5 = wv(5), w6 = wv(6), w7 = wv(7), w8 = wv(8)
      let b0 = bias.map { UnsafeRawPointer($0 + cb).loadUnaligned(as: SIMD16<Float>.self) } ?? SIMD16<Float>()
      let lo16 = SIMD16<Float>(repeating: lo)
      let hi16 = SIMD16<Float>(repeating: hi)
      for ox in pixels {
        let o = (ox &* sw &- padL) &* c &+ cb
        let r0 = UnsafeRawPointer(row0 + o)
        let r1 = UnsafeRawPointer(row1 + o)
        let r2 = UnsafeRawPointer(row2 + o)
        // One chain per window row (three FMAs each), summed at the end:
        // shorter dependency chains than nine FMAs in a row.
        var a0 = b0
        var a1 = SIMD16<Float>(repeating: 0)
        var a2 = a1
        a0.addProduct(r0.loadUnaligned(as: SIMD16<Float>.self), w0)
        a1.addProduct(r1.loadUnaligned(as: SIMD16<Float>.self), w3)
        a2.addProduct(r2.loadUnaligned(as: SIMD16<Float>.self), w6)
        a0.addProduct(r0.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self), w1)
        a1.addProduct(r1.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self), w4)
        a2.addProduct(r2.loadUnaligned(fromByteOffset: c &* 4, as: SIMD16<Float>.self), w7)
        a0.addProduct(r0.loadUnaligned(fromByteOffset: c &* 8, as: SIMD16<Float>.self), w2)
        a1.addProduct(r1.loadUnaligned(fromByteOffset: c &* 8, as: SIMD16<Float>.self), w5)
        a2.addProduct(r2.loadUnaligned(fromByteOffset: c &* 8, as: SIMD16<Float>.self), w8)
        let acc = (a0 + a1) + a2
        UnsafeMutableRawPointer(yrow + (ox &* c &+ cb)).storeBytes(of: ti_clamp16f(acc, lo16, hi16), as: SIMD16<Float>.self)
      }
      cb &+= 16
    }
    if cb < c {
      // One block of 8 channels left (c is a multiple of 8).
      @inline(__always) func wv(_ t: Int) -> SIMD8<Float> {
        UnsafeRawPointer(wp + (t &* c &+ cb)).loadUnaligned(as: SIMD8<Float>.self)
      }
      let w0 = wv(0), w1 = wv(1), w2 = wv(2), w3 = wv(3), w4 = wv(4), w5 = wv(5), w6 = wv(6), w7 = wv(7), w8 = wv(8)
      let b0 = bias.map { UnsafeRawPointer($0 + cb).loadUnaligned(as: SIMD8<Float>.self) } ?? SIMD8<Float>()
      let lo8 = SIMD8<Float>(repeating: lo)
      let hi8 = SIMD8<Float>(repeating: hi)
      for ox in pixels {
        let o = (ox &* sw &- padL) &* c &+ cb
        let p = UnsafeRawPointer(row0 + o)
        let r1 = UnsafeRawPointer(row1 + o)
        let r2 = UnsafeRawPointer(row2 + o)
        var acc = b0
        acc.addProduct(p.loadUnaligned(as: SIMD8<Float>.self), w0)
        acc.addProduct(p.loadUnaligned(fromByteOffset: c &* 4, as: SIMD8<Float>.self), w1)
        acc.addProduct(p.loadUnaligned(fromByteOffset: c &* 8, as: SIMD8<Float>.self), w2)
        acc.addProduct(r1.loadUnaligned(as: SIMD8<Float>.self), w3)
        acc.addProduct(r1.loadUnaligned(fromByteOffset: c &* 4, as: SIMD8<Float>.self), w4)
        acc.addProduct(r1.loadUnaligned(fromByteOffset: c &* 8, as: SIMD8<Float>.self), w5)
        acc.addProduct(r2.loadUnaligned(as: SIMD8<Float>.self), w6)
        acc.addProduct(r2.loadUnaligned(fromByteOffset: c &* 4, as: SIMD8<Float>.self), w7)
        acc.addProduct(r2.loadUnaligned(fromByteOffset: c &* 8, as: SIMD8<Float>.self), w8)
        UnsafeMutableRawPointer(yrow + (ox &* c &+ cb)).storeBytes(of: ti_clamp8f(acc, lo8, hi8), as: SIMD8<Float>.self)
      }
    }
  }


}
