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
    // Rows are split between threads from SplitGrain.depthwise
    // multiply-adds each.
    let minChunk = minChunkFor(perItem: ow &* kh &* kw &* cm, grain: SplitGrain.depthwise)

    if m == 1 {
      // A 3x3 window with no dilation has a kernel of its own for the
      // pixels whose window is inside the image (any channel count: its
      // last channels in blocks of 8 and 4, then one at a time).
      let fast3x3 = kh == 3 && kw == 3 && dh == 1 && dw == 1
      let interior = d.inside3
      // Window rows above or below the image read a row of zeros: the
      // process's shared read-only zeros (ti_shim_zeros: no memory of its
      // own, nothing to clear; zeroing a row per layer took 20 us of a
      // MobileNetV2 session), else a scratch row of this kernel's.
      let zeroCount = fast3x3 ? wIn &* c : 1
      let sharedZeros = checkedMul(zeroCount, MemoryLayout<Float>.stride).flatMap { ti_shim_zeros($0) }
      let zeroRow: Scratch<Float>?
      let zeros: UnsafePointer<Float>
      if let z = sharedZeros {
        zeroRow = nil
        zeros = z.assumingMemoryBound(to: Float.self)
      } else {
        let row = try Scratch<Float>(count: zeroCount)
        zeroRow = row
        zeros = UnsafePointer(row.base)
      }
      // The row kernels (C, per CPU level): the general window
      // (tinyinfer_kernels_f32.h dw_row) and the 3x3 interior (dw_3x3).
      // Each output pixel accumulates its taps in registers and is stored
      // once; the channels go in vector blocks (at AVX-512 a block of 16
      // swept across the row, several pixels a step sharing the input
      // loads, for 3- and 5-wide windows; f32_kernels.inc).
      let kern = PackedGemm.kernels
      let dwRow = kern.dw_row
      let dw3x3 = kern.dw_3x3
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
                return iy >= 0 && iy < h ? ximg + iy &* wIn &* c : zeros
              }
              dwRow(yrow, ximg, wp, bias, c, h, wIn, kh, kw, iy0, padL, sw, dh, dw, lo, hi, 0, interior.lowerBound)
              dw3x3(
                yrow, inputRow(0), inputRow(1), inputRow(2), wp, bias, c, padL, sw, lo, hi, interior.lowerBound,
                interior.upperBound)
              dwRow(yrow, ximg, wp, bias, c, h, wIn, kh, kw, iy0, padL, sw, dh, dw, lo, hi, interior.upperBound, ow)
            } else {
              dwRow(yrow, ximg, wp, bias, c, h, wIn, kh, kw, iy0, padL, sw, dh, dw, lo, hi, 0, ow)
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
}
