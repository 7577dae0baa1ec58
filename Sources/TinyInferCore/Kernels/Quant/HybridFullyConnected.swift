import TinyInferShims

/// FullyConnected with quantized weights and float32 activations (the
/// int8-dynamic and int4 modes). Bound from FullyConnectedKernel when the
/// weights are int8 with per-channel parameters, or uint8 int4 blocks
/// (attribute weight_format = 1). docs/quantization.md documents the math.
enum HybridFullyConnected {
  // MARK: - shape inference

  /// Checks int8 weights [N, K] for the hybrid path: symmetric (zero
  /// points 0), per tensor or per output channel (axis 0).
  static func checkInt8Weights(_ w: TensorDesc) throws(TinfError) {
    guard w.shape.count == 2 else { throw .shape("weights must be [N, K], got \(describe(w.shape))") }
    guard let q = w.quant else {
      throw TinfError(.unsupportedDType, "int8 weights '\(w.name)' need quantization parameters")
    }
    guard q.axis == nil || q.axis == 0 else {
      throw .unsupported("int8 weights '\(w.name)' must be quantized per tensor or along axis 0 (output channels)")
    }
    guard q.scales.count == (q.axis == nil ? 1 : w.shape[0]) else {
      throw .format("int8 weights '\(w.name)': \(q.scales.count) scales for \(w.shape[0]) channels")
    }
    for z in q.zeroPoints where z != 0 {
      throw .unsupported("int8 weights '\(w.name)' must be symmetric (zero point 0), got \(z)")
    }
  }

  /// Checks int4 block weights: uint8 [N, ceil(K/32) * 18].
  static func checkQ4Weights(_ w: TensorDesc, k: Int) throws(TinfError) {
    guard w.dtype == .uint8 else {
      throw TinfError(.unsupportedDType, "weight_format 1 (int4 blocks) needs uint8 weights, got \(w.dtype.name)")
    }
    let nb = (k + QuantNumerics.q4Block - 1) / QuantNumerics.q4Block
    guard w.shape.count == 2, w.shape[1] == nb * QuantNumerics.q4BlockBytes else {
      throw .shape(
        "int4 block weights for depth \(k) must be [N, \(nb * QuantNumerics.q4BlockBytes)], got \(describe(w.shape))")
    }
  }

  // MARK: - int8 weights, activations quantized per row at run time

  /// Quantizes one row of `k` floats to uint8 with its own range (widened
  /// to contain 0): scale = (max - min) / 255, zero point = round(-min /
  /// scale), q = clamp(round_half_even(x / scale) + zp, 0, 255); the
  /// level's C kernel (`hybrid_quantize_row` of ti_q8_kernels).
  @inline(__always)
  static func quantizeRow(
    _ kernels: ti_q8_kernels, _ x: UnsafePointer<Float>, _ k: Int, _ q: UnsafeMutablePointer<UInt8>
  ) -> (Float, Int32) {
    var scale: Float = 1
    var zp: Int32 = 0
    kernels.hybrid_quantize_row(x, k, q, &scale, &zp)
    return (scale, zp)
  }

  /// Four int32 dot products of a uint8 row with four int8 rows. Written
  /// as plain loops: LLVM vectorizes them (widening to int16/int32 and
  /// vpmaddwd, or vpdpwssd with VNNI), which is exact: no vpmaddubsw, so no
  /// int16 saturation, and weights keep their full [-127, 127].
  @inline(__always)
  static func dot4(
    _ a: UnsafeRawPointer, _ w0: UnsafeRawPointer, _ w1: UnsafeRawPointer, _ w2: UnsafeRawPointer,
    _ w3: UnsafeRawPointer, _ k: Int
  ) -> SIMD4<Int32> {
    let ap = a.assumingMemoryBound(to: UInt8.self)
    let p0 = w0.assumingMemoryBound(to: Int8.self)
    let p1 = w1.assumingMemoryBound(to: Int8.self)
    let p2 = w2.assumingMemoryBound(to: Int8.self)
    let p3 = w3.assumingMemoryBound(to: Int8.self)
    var s0: Int32 = 0
    var s1: Int32 = 0
    var s2: Int32 = 0
    var s3: Int32 = 0
    for i in 0..<k {
      let v = Int32(ap[i])
      s0 &+= v &* Int32(p0[i])
      s1 &+= v &* Int32(p1[i])
      s2 &+= v &* Int32(p2[i])
      s3 &+= v &* Int32(p3[i])
    }
    return SIMD4<Int32>(s0, s1, s2, s3)
  }

  @inline(__always)
  static func dot1(_ a: UnsafeRawPointer, _ w: UnsafeRawPointer, _ k: Int) -> Int32 {
    let ap = a.assumingMemoryBound(to: UInt8.self)
    let wp = w.assumingMemoryBound(to: Int8.self)
    var s: Int32 = 0
    for i in 0..<k { s &+= Int32(ap[i]) &* Int32(wp[i]) }
    return s
  }

  /// Depth chunk: int32 sums of up to 32768 products of |255 * 127| cannot overflow.
  static let chunk = 32768

  static func bindInt8(_ ctx: KernelContext, _ act: Activation) throws(TinfError) -> KernelFn {
    let wd = ctx.inputs[1]!
    let x = ctx.floatIn(0)
    let w = UnsafeRawPointer(ctx.inputData[1]!)
    let bias = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let k = wd.shape[1]
    let n = wd.shape[0]
    let m = ctx.inputs[0]!.count / k
    let q = wd.quant!
    // Scratch: quantized rows (m * k bytes), then per row scale and zero
    // point, then per channel weight scale and weight row sum.
    let qBytes = (m &* k &+ 63) / 64 * 64
    let scratch = try Scratch<Float>(count: qBytes / 4 + 2 * m + 2 * n)
    let base = UnsafeMutableRawPointer(scratch.base)
    let xq = base.assumingMemoryBound(to: UInt8.self)
    let rowScale = (base + qBytes).assumingMemoryBound(to: Float.self)
    let rowZp = (base + qBytes + 4 * m).assumingMemoryBound(to: Int32.self)
    let wScale = (base + qBytes + 8 * m).assumingMemoryBound(to: Float.self)
    let wSum = (base + qBytes + 8 * m + 4 * n).assumingMemoryBound(to: Int32.self)
    for c in 0..<n { wScale[c] = q.scales.count == 1 ? q.scales[0] : q.scales[c] }
    let constantW = wd.isConstant
    let kernels = ti_q8_kernels_get().pointee
    func sums() {
      for c in 0..<n {
        var s: Int32 = 0
        let row = w + c &* k
        for i in 0..<k { s &+= Int32(row.load(fromByteOffset: i, as: Int8.self)) }
        wSum[c] = s
      }
    }
    if constantW { sums() }
    let pool = ctx.pool
    let work = m &* n &* k
    if constantW && k <= packedMaxDepth {
      return try bindInt8Packed(
        x: x, w: UnsafePointer(w.assumingMemoryBound(to: Int8.self)), bias: bias, y: y, m: m, n: n, k: k,
        wScale: wScale, pool: pool, act: act, scratch: scratch)
    }

    func rowsCols(_ rows: Range<Int>, _ cols: Range<Int>) {
      for r in rows {
        let a = UnsafeRawPointer(xq + r &* k)
        let yr = y + r &* n
        let xs = rowScale[r]
        let zp = rowZp[r]
        var c = cols.lowerBound
        while c &+ 4 <= cols.upperBound {
          // Exact integer sums (int32 per chunk, int64 across chunks), one
          // rounding to float at the end.
          var t = SIMD4<Int64>(repeating: 0)
          var k0 = 0
          while k0 < k {
            let len = min(chunk, k &- k0)
            let acc = dot4(
              a + k0, w + (c &* k &+ k0), w + ((c &+ 1) &* k &+ k0), w + ((c &+ 2) &* k &+ k0),
              w + ((c &+ 3) &* k &+ k0), len)
            t[0] &+= Int64(acc[0])
            t[1] &+= Int64(acc[1])
            t[2] &+= Int64(acc[2])
            t[3] &+= Int64(acc[3])
            k0 &+= len
          }
          for j in 0..<4 {
            let total = t[j] &- Int64(zp) &* Int64(wSum[c &+ j])
            var v = Float(total) * (xs * wScale[c &+ j])
            if let bias { v += bias[c &+ j] }
            yr[c &+ j] = v
          }
          c &+= 4
        }
        while c < cols.upperBound {
          var t: Int64 = 0
          var k0 = 0
          while k0 < k {
            let len = min(chunk, k &- k0)
            t &+= Int64(dot1(a + k0, w + (c &* k &+ k0), len))
            k0 &+= len
          }
          var v = Float(t &- Int64(zp) &* Int64(wSum[c])) * (xs * wScale[c])
          if let bias { v += bias[c] }
          yr[c] = v
          c &+= 1
        }
      }
    }

    return { () throws(TinfError) in
      // The closure owns the scratch (the pointers above point into it).
      withExtendedLifetime(scratch) {}
      if !constantW { sums() }
      for r in 0..<m {
        let (s, z) = quantizeRow(kernels, x + r &* k, k, xq + r &* k)
        rowScale[r] = s
        rowZp[r] = z
      }
      splitRowsOrColumns(pool, rows: m, cols: n, minCols: 16, macs: work, minMacs: 2 &* SplitGrain.gemmInt8, rowsCols)
      act.apply(y, m &* n)
    }
  }

  /// Deepest rows for the packed path: int32 holds sum q w (at most
  /// 255 * 127 * K) minus zp sum w exactly.
  static let packedMaxDepth = 8192

  /// Constant int8 weights: rows quantized to uint8 (padded to a multiple
  /// of four) go through the packed u8 x s8 GEMM (QPackedGemm), then
  /// `y = float(acc - zp sum w) * (s_x s_w) + bias` as in the path above.
  static func bindInt8Packed(
    x: UnsafePointer<Float>, w: UnsafePointer<Int8>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
    m: Int, n: Int, k: Int, wScale: UnsafeMutablePointer<Float>, pool: ThreadPool, act: Activation,
    scratch: Scratch<Float>
  ) throws(TinfError) -> KernelFn {
    let weights = try QPackedGemm.Weights(w, n: n, k: k)
    let k4 = QPackedGemm.paddedDepth(k)
    let panels = weights.panels
    let zeros = try Scratch<Int32>(count: panels &* QPackedGemm.nr)
    let rows = try Scratch<UInt8>(count: m &* k4)
    let sums = try Scratch<Int32>(count: m &* n)
    let params = try Scratch<Float>(count: 2 &* m)
    let total = m &* n &* k
    let kernels = weights.kernels
    let (lo, hi) = act.range  // applied by the output stage
    return { () throws(TinfError) in
      let rowScale = params.base
      let rowZp = UnsafeMutableRawPointer(params.base + m).assumingMemoryBound(to: Int32.self)
      for r in 0..<m {
        let (s, z) = quantizeRow(kernels, x + r &* k, k, rows.base + r &* k4)
        rowScale[r] = s
        rowZp[r] = z
      }
      let a = UnsafePointer(rows.base)
      let acc = sums.base
      let ws = UnsafePointer(weights.colSums.base)
      let scales = UnsafePointer(wScale)
      func work(_ rr: Range<Int>, _ pr: Range<Int>) {
        guard !rr.isEmpty, !pr.isEmpty else { return }
        QPackedGemm.run(
          rows: rr.count, a: a + rr.lowerBound &* k4, lda: k4, weights: weights, initial: zeros.base,
          acc: acc + rr.lowerBound &* n, ldo: n, panels: pr)
        let c0 = pr.lowerBound &* QPackedGemm.nr
        let c1 = min(n, pr.upperBound &* QPackedGemm.nr)
        for r in rr {
          kernels.hybrid_output_row(
            acc + (r &* n &+ c0), ws + c0, rowZp[r], rowScale[r], scales + c0, bias.map { $0 + c0 }, y + (r &* n &+ c0),
            c1 &- c0, lo, hi)
        }
      }
      splitRowsOrColumns(pool, rows: m, cols: panels, minCols: 1, macs: total, minMacs: 2 &* SplitGrain.gemmInt8, work)
      withExtendedLifetime((weights, zeros, rows, sums, params, scratch)) {}
    }
  }

  // MARK: - int4 blocks

  static func bindQ4(_ ctx: KernelContext, _ act: Activation) throws(TinfError) -> KernelFn {
    let x = ctx.floatIn(0)
    let w = UnsafeRawPointer(ctx.inputData[1]!)
    let bias = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let k = ctx.inputs[0]!.shape[ctx.inputs[0]!.shape.count - 1]
    let n = ctx.inputs[1]!.shape[0]
    let m = ctx.inputs[0]!.count / k
    let nb = (k + QuantNumerics.q4Block - 1) / QuantNumerics.q4Block
    let kp = nb * QuantNumerics.q4Block
    let rowBytes = nb * QuantNumerics.q4BlockBytes
    // A depth that is not a multiple of 32: rows are copied, zero padded.
    let padded = kp != k
    let scratch = try Scratch<Float>(count: padded ? m * kp : 0)
    let pool = ctx.pool
    let work = m &* n &* k
    // The row dot product is the level's C kernel (ti_f32_kernels.dot_q4).
    let dotQ4 = PackedGemm.kernels.dot_q4
    let wb = w.assumingMemoryBound(to: UInt8.self)

    func rowsCols(_ rows: Range<Int>, _ cols: Range<Int>) {
      for r in rows {
        let xr: UnsafePointer<Float> = padded ? UnsafePointer(scratch.base + r &* kp) : x + r &* k
        let yr = y + r &* n
        for c in cols {
          var v = dotQ4(xr, wb + c &* rowBytes, nb)
          if let bias { v += bias[c] }
          yr[c] = v
        }
      }
    }

    return { () throws(TinfError) in
      if padded {
        let s = scratch.base
        for r in 0..<m {
          let dst = s + r &* kp
          for i in 0..<k { dst[i] = x[r &* k &+ i] }
          for i in k..<kp { dst[i] = 0 }
        }
      }
      splitRowsOrColumns(pool, rows: m, cols: n, minCols: 16, macs: work, minMacs: 2 &* SplitGrain.gemmInt8, rowsCols)
      act.apply(y, m &* n)
    }
  }
}
