import TinyInferShims

/// MatMul / BatchMatMul: a [..., M, K] x b [..., K, N] with transpose flags
/// on the last two dims and numpy broadcasting of the batch dims.
enum MatMulKernel {
  struct Dims {
    var m: Int, k: Int, n: Int
    var batch: [Int]
    var ta: Bool, tb: Bool
  }

  static func dims(_ node: Node, _ a: TensorDesc, _ b: TensorDesc) throws(TinfError) -> Dims {
    guard a.shape.count >= 2 && b.shape.count >= 2 else {
      throw .unsupported("inputs must have rank >= 2, got \(describe(a.shape)) and \(describe(b.shape))")
    }
    let ta = try node.attrs.int(.transposeA, default: 0, in: 0...1) == 1
    let tb = try node.attrs.int(.transposeB, default: 0, in: 0...1) == 1
    let ra = a.shape.count
    let rb = b.shape.count
    let m = ta ? a.shape[ra - 1] : a.shape[ra - 2]
    let ka = ta ? a.shape[ra - 2] : a.shape[ra - 1]
    let kb = tb ? b.shape[rb - 1] : b.shape[rb - 2]
    let n = tb ? b.shape[rb - 2] : b.shape[rb - 1]
    guard ka == kb else {
      throw .shape("inner dimensions differ: \(describe(a.shape)) x \(describe(b.shape)) (transpose \(ta), \(tb))")
    }
    let batch = try broadcastShapes(Array(a.shape[0..<(ra - 2)]), Array(b.shape[0..<(rb - 2)]))
    return Dims(m: m, k: ka, n: n, batch: batch, ta: ta, tb: tb)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let (a, b) = try floatInputs(inputs, 2...2, "input", "input")
    let d = try dims(node, a, b)
    return [TensorType(.float32, d.batch + [d.m, d.n])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let ad = ctx.inputs[0]!
    let bd = ctx.inputs[1]!
    let d = try dims(ctx.node, ad, bd)
    let a = ctx.floatIn(0)
    let b = ctx.floatIn(1)
    let y = ctx.floatOut(0)
    let (m, k, n) = (d.m, d.k, d.n)
    // Offsets of each batch matrix in a and b, computed once.
    let batchCount = d.batch.reduce(1, &*)
    let sa = broadcastStrides(Array(ad.shape[0..<(ad.shape.count - 2)]), to: d.batch)
    let sb = broadcastStrides(Array(bd.shape[0..<(bd.shape.count - 2)]), to: d.batch)
    var offA: [Int] = []
    var offB: [Int] = []
    offA.reserveCapacity(batchCount)
    offB.reserveCapacity(batchCount)
    let bstr = stridesOf(d.batch)
    for i in 0..<batchCount {
      var oa = 0
      var ob = 0
      for j in 0..<d.batch.count {
        let idx = (i / bstr[j]) % d.batch[j]
        oa += idx * sa[j]
        ob += idx * sb[j]
      }
      offA.append(oa * m * k)
      offB.append(ob * k * n)
    }
    let ta = d.ta
    let tb = d.tb
    // The broadcast form (Gemm.ab: y rows as sums of b rows, SIMD16 across
    // N) needs a as [M, K] and b as [K, N] rows: transposed operands are
    // transposed into per-thread scratch first. Batch matrices are split
    // between threads (or, for a single large one, its rows).
    let perThread = (tb ? k &* n : 0) &+ (ta ? m &* k : 0)
    let scratch = try Scratch<Float>(count: max(1, ctx.pool.threads &* perThread))
    let pool = ctx.pool
    let work = m &* n &* k
    let minBatches = minChunkFor(perItem: work, grain: 1 << 15)
    let kern = PackedGemm.kernels
    return { () throws(TinfError) in
      @inline(__always) func one(_ bi: Int, _ chunk: Int, _ rows: Range<Int>) {
        var ap = a + offA[bi]
        var bp = b + offB[bi]
        let yp = y + bi &* m &* n
        var s = scratch.base + chunk &* perThread
        if tb {
          // b is [N, K]: transpose to [K, N].
          let t = s
          for nn in 0..<n { for kk in 0..<k { t[kk &* n &+ nn] = bp[nn &* k &+ kk] } }
          bp = UnsafePointer(t)
          s = t + k &* n
        }
        if ta {
          // a is [K, M]: transpose to [M, K].
          let t = s
          for kk in 0..<k { for mm in 0..<m { t[mm &* k &+ kk] = ap[kk &* m &+ mm] } }
          ap = UnsafePointer(t)
        }
        Gemm.ab(kern, ap, lda: k, bp, ldb: n, yp, ldy: n, rows: rows, n: n, k: k)
      }
      if batchCount == 1 && pool.threads > 1 && work >= 1 << 16 && m >= 2 && !ta && !tb {
        pool.parallelRanges(m, minChunk: 1) { rows in one(0, 0, rows) }
      } else {
        forEachChunk(pool, batchCount, minChunk: minBatches) { chunk, range in
          for bi in range { one(bi, chunk, 0..<m) }
        }
      }
    }
  }
}
