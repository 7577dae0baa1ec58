/// int8 MaxPool2D and AveragePool2D (TFLite's reference integer pooling):
/// the output keeps the input's quantization parameters. Max: the largest
/// int8 value of the real cells of the window. Average: the int32 sum of the
/// raw int8 values of the real cells divided by their count, rounded half
/// away from zero. Both clamp to the fused activation's quantized range.
enum QPoolKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try QCheck.requireInt8(x, "input")
    try requireNHWC(x, "input")
    _ = try QCheck.perTensor(x, "input")
    _ = try Activation.from(node.attrs)
    guard try node.attrs.int(.countIncludePad, default: 0, in: 0...1) == 0 else {
      throw .unsupported("count_include_pad = 1 is not supported for int8 (TFLite divides by the real cells)")
    }
    let p = try PoolKernel.params(node, x)
    return [TensorType(.int8, [x.shape[0], p.h.out, p.w.out, x.shape[3]])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("pool: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    guard xq.zeroPoint == yq.zeroPoint, (xq.scale - yq.scale).magnitude <= 1e-6 * max(xq.scale, yq.scale) else {
      throw .unsupported(
        "int8 \(ctx.node.op.name) keeps the input's quantization (scale \(xq.scale), zero point \(xq.zeroPoint)); "
          + "the output declares scale \(yq.scale), zero point \(yq.zeroPoint)")
    }
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let isMax = ctx.node.op == .maxPool2D
    let p = try PoolKernel.params(ctx.node, xd)
    let n = xd.shape[0]
    let h = xd.shape[1]
    let wIn = xd.shape[2]
    let c = xd.shape[3]
    let kh = p.kh
    let kw = p.kw
    let oh = p.h.out
    let ow = p.w.out
    let padT = p.h.padBefore
    let padL = p.w.padBefore
    let sh = p.win.strides[0]
    let sw = p.win.strides[1]
    guard let xp = ctx.inputData[0] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)
    let pool = ctx.pool
    let sums = try QBuffer(bytes: isMax ? 0 : pool.threads &* c &* 4)
    let lo8 = Int8(truncatingIfNeeded: max(lo, -128))
    let hi8 = Int8(truncatingIfNeeded: min(hi, 127))
    let rows = n &* oh
    let minChunk = minChunkFor(perItem: ow &* kh &* kw &* c)
    let floatDivide = kh &* kw <= 4096  // see averageRow

    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        let acc = sums.int32 + chunk &* c
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
              yo.update(repeating: Int8.min, count: c)
              for iy in yBegin..<yEnd {
                for ix in xBegin..<xEnd {
                  let xs = x + ((b &* h &+ iy) &* wIn &+ ix) &* c
                  for ch in 0..<c where xs[ch] > yo[ch] { yo[ch] = xs[ch] }
                }
              }
              for ch in 0..<c { yo[ch] = min(max(yo[ch], lo8), hi8) }
            } else {
              acc.update(repeating: 0, count: c)
              for iy in yBegin..<yEnd {
                for ix in xBegin..<xEnd {
                  let xs = x + ((b &* h &+ iy) &* wIn &+ ix) &* c
                  for ch in 0..<c { acc[ch] &+= Int32(xs[ch]) }
                }
              }
              let count = Int32(truncatingIfNeeded: (yEnd &- yBegin) &* (xEnd &- xBegin))
              if floatDivide {
                QPoolKernel.averageRow(acc, count, lo, hi, yo, c)
                continue
              }
              let half = count / 2
              for ch in 0..<c {
                let s = acc[ch]
                let v = s > 0 ? (s &+ half) / count : (s &- half) / count
                yo[ch] = Int8(truncatingIfNeeded: min(max(v, lo), hi))
              }
            }
          }
        }
      }
    }
  }
}

extension QPoolKernel {
  /// y[i] = clamp(s[i] / count rounded half away from zero) for i < n, as
  /// the integer code `(s + count/2) / count` (s > 0; `(s - count/2) / count`
  /// otherwise, C division) computes it, in float32 so that it vectorizes.
  ///
  /// Exact for count <= 4096: |s| <= 128 count, so a = s +- count/2 and
  /// count are exact floats, and fl(a / count) is within |a / count| 2^-24 <
  /// 2^-16 of the quotient, which is either an integer (then fl(.) is that
  /// integer) or at least 1/count >= 2^-12 from one: truncating fl(.) gives
  /// the C quotient. The truncation: round to nearest with the 1.5 * 2^23
  /// magic number, then one step toward zero where that went past the
  /// quotient.
  @inline(never)
  static func averageRow(
    _ s: UnsafePointer<Int32>, _ count: Int32, _ lo: Int32, _ hi: Int32, _ y: UnsafeMutablePointer<Int8>, _ n: Int
  ) {
    let half = count / 2
    let fc = Float(count)
    let magic: Float = 12_582_912
    let magicBits = Int32(bitPattern: magic.bitPattern)
    for i in 0..<n {
      let v = s[i]
      let f = Float(v > 0 ? v &+ half : v &- half) / fc
      let t = f + magic
      let r = t - magic
      var q = Int32(bitPattern: t.bitPattern) &- magicBits
      q = q &- (f >= 0 && r > f ? 1 : 0)
      q = q &+ (f < 0 && r < f ? 1 : 0)
      y[i] = Int8(truncatingIfNeeded: q < lo ? lo : (q > hi ? hi : q))
    }
  }
}
