/// Float32 dot-product GEMM used by FullyConnected and MatMul:
/// `y[m, n] = sum_k a[m, k] * w[n, k] (+ bias[n])`, rows of a and w contiguous
/// along k. Four outputs at a time with SIMD8 accumulators.
enum Gemm {
  @inline(__always)
  static func dot4(
    _ a: UnsafePointer<Float>, _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>, _ w2: UnsafePointer<Float>,
    _ w3: UnsafePointer<Float>, _ k: Int
  ) -> SIMD4<Float> {
    var s0 = SIMD16<Float>(repeating: 0)
    var s1 = s0
    var s2 = s0
    var s3 = s0
    var i = 0
    let ar = UnsafeRawPointer(a)
    let r0 = UnsafeRawPointer(w0)
    let r1 = UnsafeRawPointer(w1)
    let r2 = UnsafeRawPointer(w2)
    let r3 = UnsafeRawPointer(w3)
    while i &+ 16 <= k {
      let o = i &* 4
      let va = ar.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
      s0.addProduct(va, r0.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s1.addProduct(va, r1.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s2.addProduct(va, r2.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s3.addProduct(va, r3.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      i &+= 16
    }
    var r = SIMD4<Float>(s0.sum(), s1.sum(), s2.sum(), s3.sum())
    while i < k {
      let v = a[i]
      r[0] += v * w0[i]
      r[1] += v * w1[i]
      r[2] += v * w2[i]
      r[3] += v * w3[i]
      i &+= 1
    }
    return r
  }

  /// Eight dot products of a with rows w, w + ldw, ... w + 7 ldw: eight
  /// independent FMA chains, one load of a per eight weight loads.
  @inline(never)
  static func dot8(_ a: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ ldw: Int, _ k: Int) -> SIMD8<Float> {
    var s0 = SIMD16<Float>(repeating: 0)
    var s1 = s0
    var s2 = s0
    var s3 = s0
    var s4 = s0
    var s5 = s0
    var s6 = s0
    var s7 = s0
    let ar = UnsafeRawPointer(a)
    let r0 = UnsafeRawPointer(w)
    let r1 = UnsafeRawPointer(w + ldw)
    let r2 = UnsafeRawPointer(w + 2 &* ldw)
    let r3 = UnsafeRawPointer(w + 3 &* ldw)
    let r4 = UnsafeRawPointer(w + 4 &* ldw)
    let r5 = UnsafeRawPointer(w + 5 &* ldw)
    let r6 = UnsafeRawPointer(w + 6 &* ldw)
    let r7 = UnsafeRawPointer(w + 7 &* ldw)
    var i = 0
    while i &+ 16 <= k {
      let o = i &* 4
      let va = ar.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
      s0.addProduct(va, r0.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s1.addProduct(va, r1.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s2.addProduct(va, r2.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s3.addProduct(va, r3.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s4.addProduct(va, r4.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s5.addProduct(va, r5.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s6.addProduct(va, r6.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      s7.addProduct(va, r7.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
      i &+= 16
    }
    var r = SIMD8<Float>(s0.sum(), s1.sum(), s2.sum(), s3.sum(), s4.sum(), s5.sum(), s6.sum(), s7.sum())
    while i < k {
      let v = a[i]
      for j in 0..<8 { r[j] += v * w[j &* ldw &+ i] }
      i &+= 1
    }
    return r
  }

  @inline(__always)
  static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int) -> Float {
    var s = SIMD16<Float>(repeating: 0)
    var i = 0
    let ar = UnsafeRawPointer(a)
    let br = UnsafeRawPointer(b)
    while i &+ 16 <= k {
      s.addProduct(
        ar.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self),
        br.loadUnaligned(fromByteOffset: i &* 4, as: SIMD16<Float>.self))
      i &+= 16
    }
    var r = s.sum()
    while i < k {
      r += a[i] * b[i]
      i &+= 1
    }
    return r
  }

  /// Rows `rows` of y = a * b, a [M, k] (row stride lda), b [k, n] (row
  /// stride ldb): each row of y is the sum over k of a[i, k] times row k of
  /// b, 64 (then 16) columns at a time in SIMD16 accumulators, the rest one
  /// by one. No horizontal sums: the form for MatMul's short depths.
  @inline(never)
  static func ab(
    _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, _ y: UnsafeMutablePointer<Float>,
    ldy: Int, rows: Range<Int>, n: Int, k: Int
  ) {
    for i in rows {
      let ar = a + i &* lda
      let yr = y + i &* ldy
      var j = 0
      while j &+ 64 <= n {
        var c0 = SIMD16<Float>(repeating: 0)
        var c1 = c0
        var c2 = c0
        var c3 = c0
        for kk in 0..<k {
          let x = SIMD16<Float>(repeating: ar[kk])
          let br = UnsafeRawPointer(b + (kk &* ldb &+ j))
          c0.addProduct(x, br.loadUnaligned(as: SIMD16<Float>.self))
          c1.addProduct(x, br.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self))
          c2.addProduct(x, br.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self))
          c3.addProduct(x, br.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self))
        }
        let yo = UnsafeMutableRawPointer(yr + j)
        yo.storeBytes(of: c0, as: SIMD16<Float>.self)
        yo.storeBytes(of: c1, toByteOffset: 64, as: SIMD16<Float>.self)
        yo.storeBytes(of: c2, toByteOffset: 128, as: SIMD16<Float>.self)
        yo.storeBytes(of: c3, toByteOffset: 192, as: SIMD16<Float>.self)
        j &+= 64
      }
      while j &+ 16 <= n {
        // Two accumulators over even and odd k.
        var c0 = SIMD16<Float>(repeating: 0)
        var c1 = c0
        var kk = 0
        while kk &+ 2 <= k {
          c0.addProduct(
            SIMD16(repeating: ar[kk]), UnsafeRawPointer(b + (kk &* ldb &+ j)).loadUnaligned(as: SIMD16<Float>.self))
          c1.addProduct(
            SIMD16(repeating: ar[kk &+ 1]),
            UnsafeRawPointer(b + ((kk &+ 1) &* ldb &+ j)).loadUnaligned(as: SIMD16<Float>.self))
          kk &+= 2
        }
        if kk < k {
          c0.addProduct(
            SIMD16(repeating: ar[kk]), UnsafeRawPointer(b + (kk &* ldb &+ j)).loadUnaligned(as: SIMD16<Float>.self))
        }
        UnsafeMutableRawPointer(yr + j).storeBytes(of: c0 + c1, as: SIMD16<Float>.self)
        j &+= 16
      }
      while j < n {
        var acc: Float = 0
        for kk in 0..<k { acc += ar[kk] * b[kk &* ldb &+ j] }
        yr[j] = acc
        j &+= 1
      }
    }
  }

  /// Rows `rows` of y = a * w^T (+ bias), for `n` outputs of depth `k`.
  /// a: [M, k] with row stride `lda`; w: [n, k] with row stride `ldw`; y row stride `ldy`.
  @inline(__always)
  static func abT(
    _ a: UnsafePointer<Float>, lda: Int, _ w: UnsafePointer<Float>, ldw: Int, _ bias: UnsafePointer<Float>?,
    _ y: UnsafeMutablePointer<Float>, ldy: Int, rows: Range<Int>, cols: Range<Int>, k: Int
  ) {
    for m in rows {
      let ar = a + m &* lda
      let yr = y + m &* ldy
      var n = cols.lowerBound
      while n &+ 8 <= cols.upperBound {
        var r = dot8(ar, w + n &* ldw, ldw, k)
        if let bias { r += UnsafeRawPointer(bias + n).loadUnaligned(as: SIMD8<Float>.self) }
        UnsafeMutableRawPointer(yr + n).storeBytes(of: r, as: SIMD8<Float>.self)
        n &+= 8
      }
      while n &+ 4 <= cols.upperBound {
        var r = dot4(ar, w + n &* ldw, w + (n &+ 1) &* ldw, w + (n &+ 2) &* ldw, w + (n &+ 3) &* ldw, k)
        if let bias { r += SIMD4(bias[n], bias[n &+ 1], bias[n &+ 2], bias[n &+ 3]) }
        yr[n] = r[0]
        yr[n &+ 1] = r[1]
        yr[n &+ 2] = r[2]
        yr[n &+ 3] = r[3]
        n &+= 4
      }
      while n < cols.upperBound {
        var r = dot(ar, w + n &* ldw, k)
        if let bias { r += bias[n] }
        yr[n] = r
        n &+= 1
      }
    }
  }
}
