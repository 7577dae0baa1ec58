/// ResizeBilinear and ResizeNearest (docs/ops.md), NHWC, to `size`
/// [OH, OW], with the float arithmetic of the TFLite reference kernels
/// (align_corners, half_pixel_centers; not both). ResizeBilinear takes
/// float32, or int8 (Quant/QResize.swift: TFLite's integer kernel, the
/// output with the input's parameters); ResizeNearest moves elements of any
/// dtype (int8 and uint8 keep their parameters).
///
/// The source coordinates depend only on the output row or column: they are
/// computed once at bind time.
enum ResizeKernel {
  struct Params {
    var oh: Int
    var ow: Int
    var alignCorners: Bool
    var halfPixelCenters: Bool
  }

  static func params(_ node: Node) throws(TinfError) -> Params {
    let size = try node.attrs.ints(.size, count: 2, default: [], in: 1...(1 << 24))
    guard size.count == 2 else { throw .unsupported("attribute size [OH, OW] is required") }
    let ac = try node.attrs.int(.alignCorners, default: 0, in: 0...1) == 1
    let hp = try node.attrs.int(.halfPixelCenters, default: 0, in: 0...1) == 1
    guard !(ac && hp) else { throw .unsupported("align_corners and half_pixel_centers cannot both be set") }
    return Params(oh: size[0], ow: size[1], alignCorners: ac, halfPixelCenters: hp)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    if node.op == .resizeBilinear {
      if Registry.quantized(x) {
        try QCheck.requireInt8(x, "input")
        _ = try QCheck.perTensor(x, "input")
      } else {
        try requireFloat(x, "input")
      }
    }
    try requireNHWC(x, "input")
    let p = try params(node)
    // ResizeNearest's elements keep their parameters; the int8 ResizeBilinear
    // computes, so its output's come from the file (checked at bind).
    let quant = node.op == .resizeNearest ? x.quant : nil
    return [TensorType(x.dtype, [x.shape[0], p.oh, p.ow, x.shape[3]], quant: quant)]
  }

  /// The TFLite scale: (in - 1) / (out - 1) with align_corners (out > 1),
  /// else in / out, in float32.
  static func scale(_ input: Int, _ output: Int, _ alignCorners: Bool) -> Float {
    if alignCorners && output > 1 { return Float(input - 1) / Float(output - 1) }
    return Float(input) / Float(output)
  }

  /// TFLite GetNearestNeighbor.
  static func nearest(_ o: Int, _ input: Int, _ output: Int, _ p: Params) -> Int {
    let s = scale(input, output, p.alignCorners)
    let offset: Float = p.halfPixelCenters ? 0.5 : 0
    let v = (Float(o) + offset) * s
    var i = Int(p.alignCorners ? fround(v) : ffloor(v))
    i = min(i, input - 1)
    // Not reachable with the reference rules (v >= 0), kept as a guard.
    return max(i, 0)
  }

  /// TFLite ComputeInterpolationValues: (scaled value, lower, upper).
  static func interpolation(_ o: Int, _ input: Int, _ output: Int, _ p: Params) -> (Float, Int, Int) {
    let s = scale(input, output, p.alignCorners)
    let v: Float = p.halfPixelCenters ? (Float(o) + 0.5) * s - 0.5 : Float(o) * s
    // The upper clamp on `lower` only guards against float round-off at the
    // far edge; the reference never reaches it.
    let lower = min(max(Int(ffloor(v)), 0), input - 1)
    let upper = max(min(Int(fceil(v)), input - 1), 0)
    return (v, lower, upper)
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("Resize: missing input") }
    let p = try params(ctx.node)
    let n = xd.shape[0]
    let h = xd.shape[1]
    let w = xd.shape[2]
    let c = xd.shape[3]
    let oh = p.oh
    let ow = p.ow
    let pool = ctx.pool
    let rows = n &* oh

    if ctx.node.op == .resizeNearest {
      var ys = [Int](repeating: 0, count: oh)
      var xs = [Int](repeating: 0, count: ow)
      for o in 0..<oh { ys[o] = nearest(o, h, oh, p) }
      for o in 0..<ow { xs[o] = nearest(o, w, ow, p) }
      let yTable = IntTable(ys)
      let xTable = IntTable(xs)
      let size = xd.dtype.size
      let rowBytes = c &* size
      guard let input = ctx.inputData[0] else { throw .format("missing input data") }
      let src = UnsafeRawPointer(input)
      let dst = ctx.outputData[0]
      let minChunk = minChunkFor(perItem: ow &* c &* size / 4 &+ ow)
      return { () throws(TinfError) in
        forEachChunk(pool, rows, minChunk: minChunk) { _, range in
          for row in range {
            let b = row / oh
            let oy = row &- b &* oh
            let iy = yTable.base[oy]
            let srow = src + (b &* h &+ iy) &* w &* rowBytes
            let drow = dst + row &* ow &* rowBytes
            for ox in 0..<ow {
              (drow + ox &* rowBytes).copyMemory(from: srow + xTable.base[ox] &* rowBytes, byteCount: rowBytes)
            }
          }
        }
      }
    }

    // Bilinear: per output row/column (lower, upper, fraction).
    var yLo = [Int](repeating: 0, count: oh)
    var yHi = [Int](repeating: 0, count: oh)
    var xLo = [Int](repeating: 0, count: ow)
    var xHi = [Int](repeating: 0, count: ow)
    let yFrac = try Scratch<Float>(count: oh)
    let xFrac = try Scratch<Float>(count: ow)
    for o in 0..<oh {
      let (v, lo, hi) = interpolation(o, h, oh, p)
      yLo[o] = lo
      yHi[o] = hi
      yFrac.base[o] = v - Float(lo)
    }
    for o in 0..<ow {
      let (v, lo, hi) = interpolation(o, w, ow, p)
      xLo[o] = lo
      xHi[o] = hi
      xFrac.base[o] = v - Float(lo)
    }
    let yLoT = IntTable(yLo)
    let yHiT = IntTable(yHi)
    let xLoT = IntTable(xLo)
    let xHiT = IntTable(xHi)
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)
    let minChunk = minChunkFor(perItem: ow &* c &* 4)
    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { _, range in
        for row in range {
          let b = row / oh
          let oy = row &- b &* oh
          let fy = yFrac.base[oy]
          let r0 = x + (b &* h &+ yLoT.base[oy]) &* w &* c
          let r1 = x + (b &* h &+ yHiT.base[oy]) &* w &* c
          let yrow = y + row &* ow &* c
          for ox in 0..<ow {
            let fx = xFrac.base[ox]
            let x0 = xLoT.base[ox] &* c
            let x1 = xHiT.base[ox] &* c
            let yo = yrow + ox &* c
            // The reference's expression and order of operations.
            let w00 = (1 - fy)
            let w01 = (1 - fx)
            for ch in 0..<c {
              yo[ch] =
                r0[x0 &+ ch] * w00 * w01 + r1[x0 &+ ch] * fy * w01 + r0[x1 &+ ch] * w00 * fx
                + r1[x1 &+ ch] * fy * fx
            }
          }
        }
      }
    }
  }
}
