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

/// int8 Mean (TFLite's reference QuantizedMeanOrSum): the int32 sum over the
/// reduced dims, `MultiplyByQuantizedMultiplier(sum - zp_x n, M') + zp_y`
/// clamped to int8, where M' folds 1/n into the multiplier of s_x / s_y:
/// with `b = min(floor(log2 n), 32, 31 + shift)`, `M' = (M << b) / n` and
/// `shift' = shift - b`.
enum QMeanKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    let reduced = try MeanKernel.reducedDims(node, x)
    let keep = try node.attrs.int(.keepDims, default: 0, in: 0...1) == 1
    var shape: [Int] = []
    for (i, d) in x.shape.enumerated() {
      if !reduced[i] {
        shape.append(d)
      } else if keep {
        shape.append(1)
      }
    }
    var count = 1
    for (i, d) in x.shape.enumerated() where reduced[i] { count *= d }
    guard count < 1 << 24 else {
      throw .unsupported("int8 Mean over \(count) elements would overflow its int32 sum")
    }
    return [TensorType(.int8, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("Mean: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let reduced = try MeanKernel.reducedDims(ctx.node, xd)
    let layout = ReductionLayout(shape: xd.shape, reduced: reduced)
    let (sizes, reduceCount, outStrides, outCount) = (layout.sizes, layout.reduceCount, layout.outStrides, layout.outCount)
    let (inner, innerReduced, outerGroups, outer) = (layout.inner, layout.innerReduced, layout.outerGroups, layout.outer)
    let sizeTable = IntTable(sizes)
    let strideTable = IntTable(outStrides)
    let sums = try QBuffer(bytes: outCount &* 4)

    // The multiplier with 1/n folded in.
    let base = try FixedPoint.requantization(Double(xq.scale) / Double(yq.scale), "Mean")
    let n = Int64(reduceCount)
    var b = Int32(63 - UInt64(n).leadingZeroBitCount)
    b = min(b, 32)
    b = min(b, 31 &+ base.shift)
    let mult = Int32(truncatingIfNeeded: (Int64(base.multiplier) << Int64(b)) / n)
    let shift = base.shift &- b
    let offset = xq.zeroPoint &* Int32(truncatingIfNeeded: n)
    let yz = yq.zeroPoint
    guard let xp = ctx.inputData[0] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)

    return { () throws(TinfError) in
      let s = sums.int32
      s.update(repeating: 0, count: outCount)
      let sz = sizeTable.base
      let st = strideTable.base
      for t in 0..<outer {
        var rem = t
        var off = 0
        var g = outerGroups &- 1
        while g >= 0 {
          let d = sz[g]
          let q = rem / d
          off &+= (rem &- q &* d) &* st[g]
          rem = q
          g &-= 1
        }
        let xs = x + t &* inner
        if innerReduced {
          s[off] &+= sumInt8(xs, inner)
        } else {
          let so = s + off
          for i in 0..<inner { so[i] &+= Int32(xs[i]) }
        }
      }
      for i in 0..<outCount {
        y[i] = requantize(s[i] &- offset, mult, shift, yz, -128, 127)
      }
    }
  }
}
