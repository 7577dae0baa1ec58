import TinyInferShims

/// int8 FullyConnected (TFLite's FullyConnected / FullyConnectedPerChannel
/// reference kernels): x int8 [..., K] per tensor, w int8 [N, K] per tensor
/// (any zero point) or per channel along dim 0 (zero points 0), optional
/// int32 bias [N];
/// `acc = sum (w - zp_w) (x - zp_x) + bias`, then
/// `clamp(round(acc M_n) + zp_y)` in double with `M_n = s_x s_w[n] / s_y`,
/// as LiteRT 2.3's reference kernel (`QRequantTable(doubleScales:)`).
///
/// The sum is computed as `sum w x - zp_x sum w - zp_w sum x + K zp_x zp_w`
/// (exact in wrapping int32 arithmetic): the row sums of constant weights are
/// taken once at bind time, and the inner loop is an int8 dot product over
/// the contiguous depth, four weight rows at a time.
enum QFullyConnectedKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let (x, w) = try ConvFamily.inputs(inputs, int8: true)
    guard x.shape.count >= 1 else { throw .shape("input must have rank >= 1") }
    guard w.shape.count == 2 else { throw .shape("weights must be [N, K], got \(describe(w.shape))") }
    let k = x.shape[x.shape.count - 1]
    guard w.shape[1] == k else {
      throw .shape("input depth \(k) does not match the weights \(describe(w.shape)) ([N, K])")
    }
    _ = try QCheck.weights(w, channels: w.shape[0], axis: 0, allowZeroPoint: true, "FullyConnected")
    try QCheck.bias(inputs, 2, w.shape[0])
    _ = try Activation.from(node.attrs)
    var out = x.shape
    out[out.count - 1] = w.shape[0]
    return [TensorType(.int8, out)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("FullyConnected: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let n = wd.shape[0]
    let k = wd.shape[1]
    let m = xd.count / k
    let (scales, wZeroPoint) = try QCheck.weights(wd, channels: n, axis: 0, allowZeroPoint: true, "FullyConnected")
    let table = try QRequantTable(doubleScales: xq.scale, weightScales: scales, outScale: yq.scale, "FullyConnected")
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)

    guard let xp = ctx.inputData[0], let wpRaw = ctx.inputData[1] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let w = UnsafePointer(wpRaw.assumingMemoryBound(to: Int8.self))
    let bias: UnsafePointer<Int32>? =
      ctx.inputData.count > 2 ? ctx.inputData[2].map { UnsafePointer($0.assumingMemoryBound(to: Int32.self)) } : nil
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)

    // Row sums of the weights: now for constants, else at each run.
    let rowSums = try QBuffer(bytes: n &* 4)
    let constantWeights = wd.isConstant
    if constantWeights {
      for r in 0..<n { rowSums.int32[r] = sumInt8(w + r &* k, k) }
    }
    let xOffset = -xq.zeroPoint
    let wOffset = -wZeroPoint
    let kTimesOffsets = Int32(truncatingIfNeeded: k) &* xOffset &* wOffset
    let yz = yq.zeroPoint
    let pool = ctx.pool

    let dot = ti_q8_kernels_get().pointee.dot_rows
    let work = { (rows: Range<Int>, cols: Range<Int>) in
      let rs = UnsafePointer(rowSums.int32)
      // Accumulators of up to 64 outputs, then requantized together.
      withUnsafeTemporaryAllocation(of: Int32.self, capacity: 64) { tmp in
        let acc = tmp.baseAddress!
        for r in rows {
          let xr = x + r &* k
          var rowConst = kTimesOffsets
          if wOffset != 0 { rowConst &+= wOffset &* sumInt8(xr, k) }
          let yr = y + r &* n
          var c0 = cols.lowerBound
          while c0 < cols.upperBound {
            let c1 = min(c0 &+ 64, cols.upperBound)
            dotInt8Rows(dot, xr, w, k, c0..<c1) { c, dot in
              var a = dot &+ xOffset &* rs[c] &+ rowConst
              if let bias { a &+= bias[c] }
              acc[c &- c0] = a
            }
            table.requantize(acc, from: c0, zp: yz, lo: lo, hi: hi, yr + c0, c1 &- c0)
            c0 = c1
          }
        }
      }
    }
    let total = m &* n &* k
    // Sparse weights chosen at load (symmetric int8 weights: wOffset is 0).
    if constantWeights, wOffset == 0, let s = ctx.sparse {
      return try SparseGemm.bindInt8(
        s, x: x, m: m, bias: bias, xZeroPoint: -xOffset, y: y, table: table, yz: yz, lo: lo, hi: hi, pool: pool)
    }
    if constantWeights {
      return try bindPacked(
        x: x, w: w, bias: bias, y: y, m: m, n: n, k: k, xOffset: xOffset, wOffset: wOffset, yz: yz, lo: lo,
        hi: hi, table: table, pool: pool)
    }
    return { () throws(TinfError) in
      if !constantWeights {
        for r in 0..<n { rowSums.int32[r] = sumInt8(w + r &* k, k) }
      }
      splitRowsOrColumns(pool, rows: m, cols: n, minCols: 16, macs: total, minMacs: 2 &* SplitGrain.gemmInt8, work)
    }
  }

  /// Constant weights: the packed int8 GEMM (QPackedGemm) on the input rows
  /// copied as unsigned bytes. The accumulators start from
  /// `bias - (128 + zp_x) sum w + K zp_x zp_w`, and with a weight zero point
  /// each row adds `-zp_w sum x`, giving the sum above exactly.
  static func bindPacked(
    x: UnsafePointer<Int8>, w: UnsafePointer<Int8>, bias: UnsafePointer<Int32>?, y: UnsafeMutablePointer<Int8>,
    m: Int, n: Int, k: Int, xOffset: Int32, wOffset: Int32, yz: Int32, lo: Int32, hi: Int32,
    table: QRequantTable, pool: ThreadPool
  ) throws(TinfError) -> KernelFn {
    let weights = try QPackedGemm.Weights(w, n: n, k: k)
    let k4 = QPackedGemm.paddedDepth(k)
    let initial = try Scratch<Int32>(count: weights.panels &* QPackedGemm.nr)
    // initial = bias + xOffset sum w + K xOffset wOffset - 128 sum w.
    let kTimesOffsets = Int32(truncatingIfNeeded: k) &* xOffset &* wOffset
    for c in 0..<n {
      let s = weights.colSums.base[c]
      initial.base[c] = (xOffset &- 128) &* s &+ kTimesOffsets
    }
    let rows = try Scratch<UInt8>(count: m &* k4)
    let sums = try Scratch<Int32>(count: m &* n)
    let total = m &* n &* k
    let panels = weights.panels
    let init0 = try Scratch<Int32>(count: panels &* QPackedGemm.nr)
    return { () throws(TinfError) in
      let ini = UnsafeMutablePointer(init0.base)
      for c in 0..<n { ini[c] = initial.base[c] &+ (bias?[c] ?? 0) }
      for r in 0..<m { QPackedGemm.toUnsigned(x + r &* k, rows.base + r &* k4, k) }
      let a = UnsafePointer(rows.base)
      let acc = sums.base
      func work(_ rr: Range<Int>, _ pr: Range<Int>) {
        guard !rr.isEmpty, !pr.isEmpty else { return }
        QPackedGemm.run(
          rows: rr.count, a: a + rr.lowerBound &* k4, lda: k4, weights: weights, initial: ini,
          acc: acc + rr.lowerBound &* n, ldo: n, panels: pr)
        let c0 = pr.lowerBound &* QPackedGemm.nr
        let c1 = min(n, pr.upperBound &* QPackedGemm.nr)
        for r in rr {
          let ar = acc + r &* n
          if wOffset != 0 {
            let rowTerm = wOffset &* sumInt8(x + r &* k, k)
            for c in c0..<c1 { ar[c] &+= rowTerm }
          }
          table.requantize(ar + c0, from: c0, zp: yz, lo: lo, hi: hi, y + (r &* n &+ c0), c1 &- c0)
        }
      }
      splitRowsOrColumns(pool, rows: m, cols: panels, minCols: 1, macs: total, minMacs: 2 &* SplitGrain.gemmInt8, work)
      withExtendedLifetime((weights, rows, sums, initial, init0)) {}
    }
  }
}
