/// MaxPool2D and AveragePool2D (docs/ops.md), NHWC.
///
/// Padding cells never take part in a max; an average divides by the number
/// of real input cells in the window (TFLite), or by KH*KW when
/// count_include_pad = 1. Explicit pads must be smaller than the filter, so
/// that every window holds at least one real cell.
enum PoolKernel {
  struct Params {
    var kh: Int
    var kw: Int
    var win: WindowAttrs
    var countIncludePad: Bool
    var h: WindowDim
    var w: WindowDim
  }

  static func params(_ node: Node, _ x: TensorDesc) throws(TinfError) -> Params {
    let filter = try node.attrs.ints(.filter, count: 2, default: [1, 1], in: 1...(1 << 20))
    let win = try WindowAttrs(node.attrs)
    guard win.dilations == [1, 1] else {
      throw .unsupported("pooling takes no dilations (got \(describe(win.dilations)))")
    }
    if win.padding == 2 {
      guard win.pads[0] < filter[0], win.pads[1] < filter[0], win.pads[2] < filter[1], win.pads[3] < filter[1] else {
        throw .unsupported(
          "pads \(describe(win.pads)) must be smaller than the filter \(describe(filter)) (a window would hold only padding)")
      }
    }
    let cip = try node.attrs.int(.countIncludePad, default: 0, in: 0...1) == 1
    if cip && node.op != .averagePool2D {
      throw .unsupported("count_include_pad = 1 applies to AveragePool2D only")
    }
    let d = try win.dims(inputH: x.shape[1], inputW: x.shape[2], kernelH: filter[0], kernelW: filter[1])
    return Params(kh: filter[0], kw: filter[1], win: win, countIncludePad: cip, h: d.h, w: d.w)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try requireFloat(x, "input")
    try requireNHWC(x, "input")
    _ = try Activation.from(node.attrs)
    let p = try params(node, x)
    return [TensorType(.float32, [x.shape[0], p.h.out, p.w.out, x.shape[3]])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("pool: missing input") }
    let isMax = ctx.node.op == .maxPool2D
    let n = xd.shape[0]
    let h = xd.shape[1]
    let wIn = xd.shape[2]
    let c = xd.shape[3]
    let act = try Activation.from(ctx.node.attrs)
    let (lo, hi) = act.range
    let p = try params(ctx.node, xd)
    let kh = p.kh
    let kw = p.kw
    let oh = p.h.out
    let ow = p.w.out
    let padT = p.h.padBefore
    let padL = p.w.padBefore
    let sh = p.win.strides[0]
    let sw = p.win.strides[1]
    let includePad = p.countIncludePad
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)
    let pool = ctx.pool
    let rows = n &* oh
    let minChunk = minChunkFor(perItem: ow &* kh &* kw &* c)

    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { _, range in
        for row in range {
          let b = row / oh
          let oy = row &- b &* oh
          let iy0 = oy &* sh &- padT
          let yBegin = max(iy0, 0)
          let yEnd = min(iy0 &+ kh, h)
          for ox in 0..<ow {
            let yo = y + (row &* ow &+ ox) &* c
            let ix0 = ox &* sw &- padL
            let xBegin = max(ix0, 0)
            let xEnd = min(ix0 &+ kw, wIn)
            if isMax {
              yo.update(repeating: -Float.infinity, count: c)
              for iy in yBegin..<yEnd {
                for ix in xBegin..<xEnd {
                  let xs = x + ((b &* h &+ iy) &* wIn &+ ix) &* c
                  for ch in 0..<c {
                    let v = xs[ch]
                    let cur = yo[ch]
                    // NaN propagates: once the max is NaN it stays NaN.
                    if v > cur || v != v { yo[ch] = v }
                  }
                }
              }
              clampRange(yo, c, act, lo, hi)
            } else {
              yo.update(repeating: 0, count: c)
              for iy in yBegin..<yEnd {
                for ix in xBegin..<xEnd {
                  let xs = x + ((b &* h &+ iy) &* wIn &+ ix) &* c
                  for ch in 0..<c { yo[ch] += xs[ch] }
                }
              }
              let count = includePad ? kh &* kw : (yEnd &- yBegin) &* (xEnd &- xBegin)
              let divisor = Float(count)
              for ch in 0..<c {
                yo[ch] = clampActivation(yo[ch] / divisor, lo, hi)
              }
            }
          }
        }
      }
    }
  }
}
