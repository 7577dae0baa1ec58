import TinyInferShims

/// int8 TransposeConv2D: TFLite's int8 TRANSPOSE_CONV (the per-channel
/// reference kernel). x int8 NHWC per tensor; weights int8 [Cout,KH,KW,Cin],
/// symmetric (zero point 0), per output channel (dim 0) or per tensor;
/// optional int32 bias [Cout] (scale s_x s_w[c]). Each output value is
/// `acc = bias + sum over the taps (i, j) that land on it of
/// sum_ci (x - zp_x) w[co, i, j, ci]`, then Conv2D's output stage
/// `clamp(MultiplyByQuantizedMultiplier(acc, M_c) + zp_y)` with
/// `M_c = s_x s_w[c] / s_y` (QRequantTable, as QConv2DKernel).
///
/// TFLite scatters each input pixel into the outputs it reaches; this
/// gathers, per output row, the taps that land on it (as the float32
/// kernel does), so rows are independent and split over threads. int32
/// sums do not depend on their order (wrapping arithmetic is associative),
/// so the result is TFLite's bit for bit.
enum QTransposeConv2DKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let (x, w) = try ConvFamily.inputs(inputs, int8: true)
    try requireNHWC(x, "input")
    guard w.shape.count == 4, w.shape[3] == x.shape[3] else {
      throw .shape("weights '\(w.name)' must be [Cout,KH,KW,\(x.shape[3])], has \(describe(w.shape))")
    }
    let cout = w.shape[0]
    _ = try QCheck.weights(w, channels: cout, axis: 0, "TransposeConv2D")
    try QCheck.bias(inputs, 2, cout)
    _ = try Activation.from(node.attrs)
    let p = try TransposeConv2DKernel.params(node, x, w)
    return [TensorType(.int8, [x.shape[0], p.h.out, p.w.out, cout])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("TransposeConv2D: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let (n, h, wIn, cin) = (xd.shape[0], xd.shape[1], xd.shape[2], xd.shape[3])
    let (cout, kh, kw) = (wd.shape[0], wd.shape[1], wd.shape[2])
    let (scales, _) = try QCheck.weights(wd, channels: cout, axis: 0, "TransposeConv2D")
    // Periodic: requantizePixels may run a whole output row as one flat run.
    let table = try QRequantTable(
      inScale: xq.scale, weightScales: scales, outScale: yq.scale, periodic: true,
      float: try QCheck.floatRequantization(ctx), "TransposeConv2D")
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let p = try TransposeConv2DKernel.params(ctx.node, xd, wd)
    let (oh, ow, padT, padL) = (p.h.out, p.w.out, p.h.padBefore, p.w.padBefore)
    let (sh, sw) = (p.win.strides[0], p.win.strides[1])
    let (dh, dw) = (p.win.dilations[0], p.win.dilations[1])
    let (xz, yz) = (xq.zeroPoint, yq.zeroPoint)
    let x = ctx.input(0, Int8.self)
    let w = ctx.input(1, Int8.self)
    let bias = ctx.optionalInput(2, Int32.self)
    let y = ctx.output(0, Int8.self)
    let pool = ctx.pool
    if dh == 1 && dw == 1 && kh <= sh && kw <= sw && wd.isConstant {
      return try bindOneTap(
        x: x, w: w, bias: bias, biasConstant: ctx.inputs.count < 3 || (ctx.inputs[2]?.isConstant ?? true), y: y,
        pool: pool, shape: (n, h, wIn, cin, cout, kh, kw), out: (oh, ow, padT, padL, sh, sw),
        stage: (table, xz, yz, lo, hi))
    }

    // The weights tap by tap, [KH*KW][Cout][Cin], so that one tap's rows
    // are contiguous for the dot-product kernel, and each row's sum (the
    // input zero point's share: sum (x - zp) w = sum x w - zp sum w).
    let taps = kh &* kw
    let packed = try QBuffer(bytes: taps &* cout &* cin)
    let sums = try QBuffer(bytes: taps &* cout &* 4)
    let constantWeights = wd.isConstant
    func pack() {
      for t in 0..<taps {
        for co in 0..<cout {
          let dst = packed.int8 + (t &* cout &+ co) &* cin
          dst.update(from: w + (co &* taps &+ t) &* cin, count: cin)
          sums.int32[t &* cout &+ co] = sumInt8(dst, cin)
        }
      }
    }
    if constantWeights { pack() }
    let rowLen = ow &* cout
    let accRows = try QBuffer(bytes: pool.threads &* rowLen &* 4)
    let dot: Q8DotRows = ti_q8_kernels_get().pointee.dot_rows
    // Taps landing on one output pixel: about KH*KW / (sh*sw).
    let perPixel = max(1, (kh / max(sh, 1) + 1) &* (kw / max(sw, 1) + 1))
    let minChunk = minChunkFor(perItem: ow &* perPixel &* cin &* cout)

    return { () throws(TinfError) in
      if !constantWeights { pack() }
      let wp = UnsafePointer(packed.int8)
      let rs = UnsafePointer(sums.int32)
      forEachChunk(pool, n &* oh, minChunk: minChunk) { chunk, range in
        let acc = accRows.int32 + chunk &* rowLen
        for row in range {
          let b = row / oh
          let oy = row &- b &* oh
          QTransposeConv2DKernel.startRow(acc, bias, ow: ow, cout: cout)
          for i in 0..<kh {
            guard let iy = TransposeConv2DKernel.inputRow(oy, i, padT: padT, dh: dh, sh: sh, h: h) else { continue }
            let xrow = x + (b &* h &+ iy) &* wIn &* cin
            for j in 0..<kw {
              let off = padL &- j &* dw
              let span = TransposeConv2DKernel.inputColumns(off: off, sw: sw, ow: ow, wIn: wIn)
              guard !span.isEmpty else { continue }
              let tap = i &* kw &+ j
              let wt = wp + tap &* cout &* cin
              let st = rs + tap &* cout
              for ix in span {
                let a = acc + (ix &* sw &- off) &* cout
                dotInt8Rows(dot, xrow + ix &* cin, wt, cin, 0..<cout) { c, d in
                  a[c] &+= d &- xz &* st[c]
                }
              }
            }
          }
          table.requantizePixels(UnsafePointer(acc), ow, zp: yz, lo: lo, hi: hi, y + row &* rowLen)
        }
      }
      withExtendedLifetime((packed, sums, accRows, table)) {}
    }
  }

  /// Strides at least the kernel's size, no dilation, constant weights (the
  /// 2x2 stride-2 upsampling of U-Net and FPN decoders, a mask head's last
  /// layer): each output pixel receives at most one tap, and the taps of
  /// kernel row i put input row iy on output row iy*sh - padT + i. That
  /// row's accumulators are one int8 GEMM (QPackedGemm, as the int8
  /// Conv2D) of the input row's pixels [W, Cin] with the kernel row's
  /// weights stacked as [KW*Cout, Cin] (column j*Cout + co: tap j, output
  /// channel co; one GEMM however few the output channels), whose starting
  /// values `bias - (128 + zp_x) * sum w` undo the unsigned rows' offset;
  /// column block j of input pixel ix goes to output pixel
  /// ix*sw - padL + j. Pixels no tap reaches hold the bias. Then the row is
  /// requantized as Conv2D's output.
  static func bindOneTap(
    x: UnsafePointer<Int8>, w: UnsafePointer<Int8>, bias: UnsafePointer<Int32>?, biasConstant: Bool,
    y: UnsafeMutablePointer<Int8>, pool: ThreadPool,
    shape: (n: Int, h: Int, w: Int, cin: Int, cout: Int, kh: Int, kw: Int),
    out: (oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int),
    stage: (table: QRequantTable, xz: Int32, yz: Int32, lo: Int32, hi: Int32)
  ) throws(TinfError) -> KernelFn {
    let (n, h, wIn, cin, cout, kh, kw) = shape
    let (oh, ow, padT, padL, sh, sw) = out
    let (table, xz, yz, lo, hi) = stage
    let cols = kw &* cout
    // Kernel row i's weights as [KW*Cout, Cin], packed once.
    var rowWeights: [QPackedGemm.Weights] = []
    let stacked = try Scratch<Int8>(count: cols &* cin)
    for i in 0..<kh {
      for j in 0..<kw {
        for co in 0..<cout {
          let src: UnsafePointer<Int8> = w + ((co &* kh &+ i) &* kw &+ j) &* cin
          (stacked.base + (j &* cout &+ co) &* cin).update(from: src, count: cin)
        }
      }
      rowWeights.append(try QPackedGemm.Weights(UnsafePointer(stacked.base), n: cols, k: cin))
    }
    let panelCols = rowWeights[0].panels &* QPackedGemm.nr
    let initial = try Scratch<Int32>(count: kh &* panelCols)
    func setInitial() {
      let offset = 128 &+ xz
      for i in 0..<kh {
        for c in 0..<cols {
          initial.base[i &* panelCols &+ c] = (bias?[c % cout] ?? 0) &- offset &* rowWeights[i].colSums.base[c]
        }
      }
    }
    if biasConstant { setInitial() }
    let k4 = QPackedGemm.paddedDepth(cin)
    let rowLen = ow &* cout
    let threads = pool.threads
    let rowsU8 = try Scratch<UInt8>(count: threads &* wIn &* k4)
    let gemmOut = try Scratch<Int32>(count: threads &* wIn &* cols)
    let accRows = try Scratch<Int32>(count: threads &* rowLen)
    let minChunk = minChunkFor(perItem: wIn &* cin &* cols, grain: 1 << 15)
    // Whether some pixels of a computed row get no tap (then the bias first).
    let gaps = kw < sw || ow &+ padL > wIn &* sw
    // The GEMM's rows are the output row's pixels in order (kernel as wide as
    // the stride, no left padding, every pixel of the row written).
    let inPlace = kw == sw && padL == 0 && ow == wIn &* sw
    return { () throws(TinfError) in
      if !biasConstant { setInitial() }
      forEachChunk(pool, n &* oh, minChunk: minChunk) { chunk, range in
        let buf = rowsU8.base + chunk &* wIn &* k4
        let g = gemmOut.base + chunk &* wIn &* cols
        let acc = accRows.base + chunk &* rowLen
        var converted = -1  // the input row (b * h + iy) now in buf
        for row in range {
          let b = row / oh
          let oy = row &- b &* oh
          let i = (oy &+ padT) % sh
          let iy = (oy &+ padT) / sh
          let reached = i < kh && iy < h
          if !reached || gaps { QTransposeConv2DKernel.startRow(acc, bias, ow: ow, cout: cout) }
          if reached {
            let src = b &* h &+ iy
            if src != converted {
              let xrow = x + src &* wIn &* cin
              if k4 == cin {
                QPackedGemm.toUnsigned(xrow, buf, wIn &* cin)
              } else {
                for ix in 0..<wIn { QPackedGemm.toUnsigned(xrow + ix &* cin, buf + ix &* k4, cin) }
              }
              converted = src
            }
            let ini = UnsafePointer(initial.base + i &* panelCols)
            if inPlace {
              // Input pixel ix's columns [tap j][co] are output pixels ix*sw + j: the row itself.
              QPackedGemm.run(
                rows: wIn, a: UnsafePointer(buf), lda: k4, weights: rowWeights[i], initial: ini, acc: acc, ldo: cols)
              table.requantizePixels(UnsafePointer(acc), ow, zp: yz, lo: lo, hi: hi, y + row &* rowLen)
              continue
            }
            QPackedGemm.run(
              rows: wIn, a: UnsafePointer(buf), lda: k4, weights: rowWeights[i], initial: ini, acc: g, ldo: cols)
            for j in 0..<kw {
              let off = padL &- j
              let span = TransposeConv2DKernel.inputColumns(off: off, sw: sw, ow: ow, wIn: wIn)
              guard !span.isEmpty else { continue }
              // Column block j of each input pixel to its output pixel. (This
              // copy took three times the GEMM's time on the 2x2 stride-2 layer
              // of PP-OCR's head when every row went through it: hence inPlace.)
              for ix in span {
                let ox: Int = ix &* sw &- off
                let dst = acc + ox &* cout
                let src = g + (ix &* cols &+ j &* cout)
                for c in 0..<cout { dst[c] = src[c] }
              }
            }
          }
          table.requantizePixels(UnsafePointer(acc), ow, zp: yz, lo: lo, hi: hi, y + row &* rowLen)
        }
      }
      withExtendedLifetime((rowWeights, initial, rowsU8, gemmOut, accRows, table)) {}
    }
  }

  /// An output row's accumulators at their start: the bias of each pixel, or zeros.
  @inline(__always)
  static func startRow(_ acc: UnsafeMutablePointer<Int32>, _ bias: UnsafePointer<Int32>?, ow: Int, cout: Int) {
    guard let bias else {
      acc.update(repeating: 0, count: ow &* cout)
      return
    }
    for ox in 0..<ow { (acc + ox &* cout).update(from: bias, count: cout) }
  }
}
