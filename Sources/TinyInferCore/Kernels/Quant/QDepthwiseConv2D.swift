import TinyInferShims

/// int8 DepthwiseConv2D: TFLite's DepthwiseConvPerChannel reference kernel
/// (see QConv.swift for the parameters). Output channel c*M+m reads input
/// channel c; `acc = sum w (x - zp_x) + bias` over the taps inside the image
/// (padding contributes nothing), then per channel
/// `y = clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)`.
///
/// Depth multiplier 1 with at least 16 channels: each output row is one
/// call of the level's C kernel (`dw3x3_row` for a 3x3 window without
/// dilation, `dw_row` for any other; tinyinfer_kernels_q8.h), which runs
/// the channels in blocks of 16 (the last block overlapping the one before
/// when C is not a multiple of 16), accumulates each pixel's taps on 16
/// int32 lanes (x w is exact in int16) with the zero point folded into the
/// bias, and requantizes 16 lanes at a time. Window rows above or below the
/// image read a row of zero points, as do taps left or right of it: with
/// the folded zero point they add nothing. Otherwise each pixel's
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
    /// A 3x3 window without dilation (the `dw3x3_row` kernel).
    let is3x3: Bool
    /// An input row (W * C values) of the input zero point: the window
    /// rows above and below the image, which then contribute nothing.
    let padRow: UnsafePointer<Int8>
    /// The level's C kernels (ti_q8_kernels), fetched at bind.
    let kernels = ti_q8_kernels_get().pointee
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let d = try ConvDims(ctx, depthwise: true)
    let o = try QConv2DKernel.Operands(ctx, depthwise: true)
    let (c, cm, kh, kw) = (d.cin, d.cout, d.kh, d.kw)
    let m = try ctx.attrs.int(.depthMultiplier, default: 1, in: 1...(1 << 20))
    let padRow = try QBuffer(bytes: d.w &* c)
    for i in 0..<(d.w &* c) { padRow.int8[i] = Int8(truncatingIfNeeded: o.xz) }
    let p = Params(o: o, d: d, is3x3: kh == 3 && kw == 3 && d.dw == 1, padRow: UnsafePointer(padRow.int8))
    let pool = ctx.pool
    let minChunk = minChunkFor(perItem: d.ow &* kh &* kw &* cm, grain: 1 << 14)  // as the float kernel
    if !(m == 1 && c >= 16) {
      let accs = try QBuffer(bytes: pool.threads &* cm &* 4)
      return ConvDriver.depthwise(d, x: o.x, w: o.w, y: o.y, pool: pool, minChunk: minChunk, Taps(p: p, m: m, accs: accs))
    }
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
      withExtendedLifetime((padRow, windowRows)) {}
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
  /// the window rows' input rows (the row of zero points where a window row
  /// is outside the image) into `rows`, then one call of the row kernel.
  @inline(never)
  static func row16(_ p: Params, _ row: Int, _ rows: UnsafeMutablePointer<UnsafePointer<Int8>>) {
    let d = p.d
    let c = d.cin
    let b = row / d.oh
    let oy = row &- b &* d.oh
    let iy0 = oy &* d.sh &- d.padT
    let rowStride = d.w &* c
    let ximg = p.o.x + b &* d.h &* rowStride
    let yrow = p.o.y + row &* d.ow &* c
    for i in 0..<d.kh {
      let iy = iy0 &+ i &* d.dh
      rows[i] = iy >= 0 && iy < d.h ? ximg + iy &* rowStride : p.padRow
    }
    let o = p.o
    if p.is3x3 {
      p.kernels.dw3x3_row(
        rows[0], rows[1], rows[2], yrow, o.w, c, d.sw, d.padL, d.w, d.ow, o.bias, o.xz, o.table.base, o.table.stride,
        o.yz, o.lo, o.hi)
    } else {
      p.kernels.dw_row(
        rows, d.kh, d.kw, yrow, o.w, c, d.sw, d.dw, d.padL, d.w, d.ow, o.bias, o.xz, o.table.base, o.table.stride,
        o.yz, o.lo, o.hi)
    }
  }
}
