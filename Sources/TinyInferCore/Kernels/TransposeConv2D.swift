import TinyInferShims

/// TransposeConv2D (docs/ops.md): x [N,H,W,Cin], w [Cout,KH,KW,Cin],
/// optional bias [Cout]. The gradient of Conv2D:
/// `y[n, ih*s_h - pad_top + kh*d_h, iw*s_w - pad_left + kw*d_w, co] += x[n, ih, iw, ci] * w[co, kh, kw, ci]`.
///
/// Computed as a gather, so output rows are independent and can be split
/// over threads: each output pixel sums, over the taps that land on it, the
/// dot products of the input pixel with the weight rows (contiguous in Cin).
enum TransposeConv2DKernel {
  /// The input row whose taps of kernel row i land on output row oy
  /// (oy = iy * sh - padT + i * dh), nil when none does (float and int8).
  @inline(__always)
  static func inputRow(_ oy: Int, _ i: Int, padT: Int, dh: Int, sh: Int, h: Int) -> Int? {
    let t = oy &+ padT &- i &* dh
    guard t >= 0, t % sh == 0, t / sh < h else { return nil }
    return t / sh
  }

  /// The input columns ix whose tap with horizontal offset `off` (padL - j * dw
  /// for kernel column j) lands inside the output row, ox = ix * sw - off in
  /// [0, ow); empty when none does (float and int8).
  @inline(__always)
  static func inputColumns(off: Int, sw: Int, ow: Int, wIn: Int) -> Range<Int> {
    @inline(__always) func ceilDiv(_ a: Int) -> Int { a > 0 ? (a &+ sw &- 1) / sw : 0 &- ((0 &- a) / sw) }
    let first = max(0, ceilDiv(off))
    return first..<max(first, min(wIn, ceilDiv(ow &+ off)))
  }

  /// Output size and leading padding of one spatial dim.
  static func outDim(input: Int, kernel: Int, stride: Int, dilation: Int, padding: Int, explicit: (Int, Int),
    outputPadding: Int
  ) throws(TinfError) -> WindowDim {
    // input <= 2^34, stride/dilation/kernel-derived values <= 2^40: no overflow.
    let eff = (kernel - 1) * dilation + 1
    let out: Int
    var before = 0
    switch padding {
    case 0:
      out = (input - 1) * stride + eff + outputPadding
    case 1:
      out = input * stride + outputPadding
      before = max((input - 1) * stride + eff - input * stride, 0) / 2
    default:
      out = (input - 1) * stride + eff - explicit.0 - explicit.1 + outputPadding
      before = explicit.0
    }
    guard out >= 1 else {
      throw .shape("output size \(out) is not positive (input \(input), kernel \(kernel), pads \(explicit.0)+\(explicit.1))")
    }
    return WindowDim(out: out, padBefore: before)
  }

  struct Params {
    var h: WindowDim
    var w: WindowDim
    var win: WindowAttrs
  }

  static func params(_ node: Node, _ x: TensorDesc, _ w: TensorDesc) throws(TinfError) -> Params {
    let win = try WindowAttrs(node.attrs)
    let op = try node.attrs.ints(.outputPadding, count: 2, default: [0, 0], in: 0...(1 << 20))
    for i in 0..<2 where op[i] >= max(win.strides[i], win.dilations[i]) {
      throw .unsupported(
        "output_padding \(op[i]) must be smaller than the stride (\(win.strides[i])) or the dilation (\(win.dilations[i]))")
    }
    let h = try outDim(
      input: x.shape[1], kernel: w.shape[1], stride: win.strides[0], dilation: win.dilations[0], padding: win.padding,
      explicit: (win.pads[0], win.pads[1]), outputPadding: op[0])
    let wd = try outDim(
      input: x.shape[2], kernel: w.shape[2], stride: win.strides[1], dilation: win.dilations[1], padding: win.padding,
      explicit: (win.pads[2], win.pads[3]), outputPadding: op[1])
    return Params(h: h, w: wd, win: win)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let (x, w) = try floatInputs(inputs, 2...3, "input", "weights")
    try requireNHWC(x, "input")
    guard w.shape.count == 4, w.shape[3] == x.shape[3] else {
      throw .shape("weights '\(w.name)' must be [Cout,KH,KW,\(x.shape[3])], has \(describe(w.shape))")
    }
    let cout = w.shape[0]
    try checkBias(inputs, 2, cout)
    _ = try Activation.from(node.attrs)
    let p = try params(node, x, w)
    return [TensorType(.float32, [x.shape[0], p.h.out, p.w.out, cout])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("TransposeConv2D: missing input") }
    let n = xd.shape[0]
    let h = xd.shape[1]
    let wIn = xd.shape[2]
    let cin = xd.shape[3]
    let cout = wd.shape[0]
    let kh = wd.shape[1]
    let kw = wd.shape[2]
    let act = try Activation.from(ctx.node.attrs)
    let (lo, hi) = act.range
    let p = try params(ctx.node, xd, wd)
    let oh = p.h.out
    let ow = p.w.out
    let padT = p.h.padBefore
    let padL = p.w.padBefore
    let sh = p.win.strides[0]
    let sw = p.win.strides[1]
    let dh = p.win.dilations[0]
    let dw = p.win.dilations[1]
    let wStride = kh &* kw &* cin  // between output channels
    let (x, wp, bias, y) = (ctx.floatIn(0), ctx.floatIn(1), ctx.optionalFloatIn(2), ctx.floatOut(0))
    let pool = ctx.pool
    let rows = n &* oh
    if dh == 1 && dw == 1 && kh <= sh && kw <= sw {
      return try bindOneTap(
        x: x, w: wp, bias: bias, y: y, pool: pool, shape: (n, h, wIn, cin, cout, kh, kw),
        out: (oh, ow, padT, padL, sh, sw), act: act)
    }
    // Taps landing on one output pixel: about KH*KW / (sh*sw).
    let taps = max(1, (kh / max(sh, 1) + 1) &* (kw / max(sw, 1) + 1))
    let minChunk = minChunkFor(perItem: ow &* taps &* cin &* cout)

    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { _, range in
        for row in range {
          let b = row / oh
          let oy = row &- b &* oh
          let yrow = y + row &* ow &* cout
          fillBias(yrow, bias, cout, ow &* cout)
          for i in 0..<kh {
            guard let iy = inputRow(oy, i, padT: padT, dh: dh, sh: sh, h: h) else { continue }
            for ox in 0..<ow {
              let yo = yrow + ox &* cout
              for j in 0..<kw {
                let u = ox &+ padL &- j &* dw
                if u < 0 { break }
                if u % sw != 0 { continue }
                let ix = u / sw
                if ix >= wIn { continue }
                let xs = x + ((b &* h &+ iy) &* wIn &+ ix) &* cin
                let wtap = wp + (i &* kw &+ j) &* cin
                var co = 0
                while co < cout {
                  let c1 = min(co &+ 1, cout &- 1)
                  let c2 = min(co &+ 2, cout &- 1)
                  let c3 = min(co &+ 3, cout &- 1)
                  let r = dot1x4(
                    xs, wtap + co &* wStride, wtap + c1 &* wStride, wtap + c2 &* wStride, wtap + c3 &* wStride, cin)
                  yo[co] += r[0]
                  if co &+ 1 < cout { yo[co &+ 1] += r[1] }
                  if co &+ 2 < cout { yo[co &+ 2] += r[2] }
                  if co &+ 3 < cout { yo[co &+ 3] += r[3] }
                  co &+= 4
                }
              }
            }
          }
          clampRange(yrow, ow &* cout, act, lo, hi)
        }
      }
    }
  }

  /// Strides at least the kernel's size, no dilation (the 2x2 stride-2
  /// upsampling of U-Net and FPN decoders): each output pixel receives at
  /// most one tap, so tap (i, j) computes output pixels (iy*sh - padT + i,
  /// ix*sw - padL + j) as a GEMM of the input row's pixels [W, Cin] with the
  /// tap's weights [Cout, Cin], packed once at bind (PackedGemm panels),
  /// its output rows sw pixels apart. Pixels no tap reaches get the bias.
  static func bindOneTap(
    x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
    pool: ThreadPool, shape: (n: Int, h: Int, w: Int, cin: Int, cout: Int, kh: Int, kw: Int),
    out: (oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int), act: Activation
  ) throws(TinfError) -> KernelFn {
    let (n, h, wIn, cin, cout, kh, kw) = shape
    let (oh, ow, padT, padL, sh, sw) = out
    let (lo, hi) = act.range
    // Few output channels (a 16-wide panel would be mostly padding): dot
    // products of each input pixel with the tap's weight rows (gemm_abt).
    let dots = cout < 8
    let per = dots ? cout &* cin : PackedGemm.packedCount(n: cout, k: cin)
    let packed = try Scratch<Float>(count: dots ? 1 : kh &* kw &* per)
    let rowsOfTap = try Scratch<Float>(count: dots ? kh &* kw &* per : cout &* cin)
    for i in 0..<kh {
      for j in 0..<kw {
        let t = i &* kw &+ j
        let rows = dots ? rowsOfTap.base + t &* per : rowsOfTap.base
        for co in 0..<cout {
          let src = w + ((co &* kh &+ i) &* kw &+ j) &* cin
          (rows + co &* cin).update(from: src, count: cin)
        }
        if !dots { PackedGemm.pack(UnsafePointer(rows), n: cout, k: cin, into: packed.base + t &* per) }
      }
    }
    let kern = PackedGemm.kernels
    let panels = (cout + PackedGemm.nr - 1) / PackedGemm.nr
    let minChunk = minChunkFor(perItem: ow &* cin &* cout)
    return { () throws(TinfError) in
      withExtendedLifetime((packed, rowsOfTap)) {}
      forEachChunk(pool, n &* oh, minChunk: minChunk) { _, range in
        for row in range {
          let b = row / oh
          let oy = row &- b &* oh
          let yrow = y + row &* ow &* cout
          let i = (oy &+ padT) % sh
          let iy = (oy &+ padT) / sh
          guard i < kh, iy < h else {
            fillBias(yrow, bias, cout, ow &* cout)
            clampRange(yrow, ow &* cout, act, lo, hi)
            continue
          }
          if kw < sw || ow &+ padL > wIn &* sw {
            // Some pixels of the row get no tap: the bias first.
            fillBias(yrow, bias, cout, ow &* cout)
            clampRange(yrow, ow &* cout, act, lo, hi)
          }
          let xrow = x + (b &* h &+ iy) &* wIn &* cin
          for j in 0..<kw {
            let cols = inputColumns(off: padL &- j, sw: sw, ow: ow, wIn: wIn)
            guard !cols.isEmpty else { continue }
            let (first, end) = (cols.lowerBound, cols.upperBound)
            if dots {
              kern.gemm_abt(
                xrow, cin, rowsOfTap.base + (i &* kw &+ j) &* per, cin, bias, yrow + (j &- padL) &* cout,
                sw &* cout, first, end, 0, cout, cin)
              continue
            }
            let tap = UnsafePointer(packed.base + (i &* kw &+ j) &* per)
            PackedGemm.runStrided(
              kern, rows: first..<end, a: xrow, lda: cin, panels: 0..<panels, k: cin, n: cout, packed: tap,
              bias: bias, lo: lo, hi: hi, y: yrow + (j &- padL) &* cout, ldy: sw &* cout)
          }
          if dots { clampRange(yrow, ow &* cout, act, lo, hi) }
        }
      }
    }
  }
}
