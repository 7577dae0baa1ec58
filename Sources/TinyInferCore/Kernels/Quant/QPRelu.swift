import TinyInferShims

/// int8 PRelu (TFLite's reference_ops::BroadcastPrelu4DSlow, prelu.cc):
/// with `x' = x - zp_x` and `a' = alpha - zp_alpha`,
/// `y = clamp(zp_y + (x' >= 0 ? MBQM(x', s_x / s_y) : MBQM(x' a', s_x s_alpha / s_y)), -128, 127)`,
/// the two multipliers computed in float from the float scales, as prelu.cc
/// does. The slope broadcasts to x (numpy rules; the output is x's shape).
///
/// A constant per-channel slope (the usual case) runs as two floor-linear
/// pieces (`linearForm`, QLinearFit; ti_q8_kernels prelu_lin_row) where
/// they reproduce every value. Otherwise rows run a vector at a time in the
/// level's C kernel (prelu_row, q8_prelu.inc: both branches computed, one
/// chosen per lane). The tails element by element with the same arithmetic.
enum QPReluKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...2)
    let x = try required(inputs, 0, "x")
    let a = try required(inputs, 1, "slope")
    try QCheck.requireInt8(x, "input")
    try QCheck.requireInt8(a, "slope")
    _ = try QCheck.perTensor(x, "input")
    _ = try QCheck.perTensor(a, "slope")
    guard try broadcastShapes(x.shape, a.shape) == x.shape else {
      throw .shape("slope \(describe(a.shape)) does not broadcast to the input \(describe(x.shape))")
    }
    return [TensorType(.int8, x.shape)]
  }

  /// The output for input value x and slope value a (both raw int8).
  static func value(_ x: Int32, _ a: Int32, _ xq: QParams, _ aq: QParams, _ yq: QParams,
                    _ m1: FixedPoint.Multiplier, _ m2: FixedPoint.Multiplier) -> Int8 {
    let xv = x &- xq.zeroPoint
    let v = xv >= 0 ? FixedPoint.mul(xv, m1) : FixedPoint.mul(xv &* (a &- aq.zeroPoint), m2)
    return Int8(max(-128, min(127, v &+ yq.zeroPoint)))
  }

  /// What `linearForm` and `linearForm16` share: the table's entry count
  /// (the channels repeated to a multiple of 16, every level's vector,
  /// unless there is one), the table (two words an entry), a 256-byte row
  /// of target values, and the two pieces' real slopes s_x / s_y and
  /// s_x s_a / s_y.
  struct FitBuffers {
    let zx: Int
    let entries: Int
    let table: QBuffer
    let target: QBuffer
    let sx: Double
    let sn: Double

    init(_ xq: QParams, _ aq: QParams, _ yq: QParams, period: Int) throws(TinfError) {
      zx = Int(xq.zeroPoint)
      var e = period
      while e != 1 && e % 16 != 0 { e &+= period }
      entries = e
      table = try QBuffer(bytes: 2 &* e &* 4)
      target = try QBuffer(bytes: 256)
      sx = Double(xq.scale) / Double(yq.scale)
      sn = Double(xq.scale) * Double(aq.scale) / Double(yq.scale)
    }
  }

  /// A per-channel (constant) slope's PRelu as two floor-linear pieces
  /// (QLinearFit): x >= zp_x with one (p, q), each channel's x < zp_x with
  /// its own, all checked against `value` over every int8 x; nil where a
  /// piece has no fit. `table` holds `entries` p (entry e for channel
  /// e % period), then as many q: the channels repeated to a multiple of 16
  /// (every level's vector) unless there is one.
  static func linearForm(
    _ xq: QParams, _ aq: QParams, _ yq: QParams, _ m1: FixedPoint.Multiplier, _ m2: FixedPoint.Multiplier,
    slope: UnsafePointer<Int8>, period: Int
  ) throws(TinfError) -> (params: ti_q8_prelu_lin, table: QBuffer, entries: Int)? {
    let fit = try FitBuffers(xq, aq, yq, period: period)
    defer { withExtendedLifetime(fit) {} }  // t points into fit.target
    let (zx, entries, table, t, sx, sn) = (fit.zx, fit.entries, fit.table, fit.target.int8, fit.sx, fit.sn)
    shifts: for shift in QLinearFit.shifts {
      // x >= zp_x: the slope takes no part.
      for x in zx...127 { t[x &- zx] = value(Int32(x), 0, xq, aq, yq, m1, m2) }
      guard let pos = QLinearFit.find(
        zx...127, 0...0, UnsafePointer(t), slope1: sx, slope2: 0, shift: shift, lo: -128, hi: 127)
      else { continue }
      // Channels with the same int8 slope share their fit (computed once).
      var fitted = [QLinearFit?](repeating: nil, count: 256)
      for ch in 0..<period {
        var neg = QLinearFit(p1: 0, p2: 0, c: 0)
        if zx > -128 {
          let av = Int32(slope[ch])
          if let f = fitted[Int(av) &+ 128] {
            neg = f
          } else {
            for x in -128...(zx &- 1) { t[x &+ 128] = value(Int32(x), av, xq, aq, yq, m1, m2) }
            guard let f = QLinearFit.find(
              -128...(zx &- 1), 0...0, UnsafePointer(t), slope1: sn * Double(av &- aq.zeroPoint), slope2: 0,
              shift: shift, lo: -128, hi: 127)
            else { continue shifts }
            fitted[Int(av) &+ 128] = f
            neg = f
          }
        }
        for e in stride(from: ch, to: entries, by: period) {
          table.int32[e] = neg.p1
          table.int32[entries &+ e] = neg.c
        }
      }
      return (ti_q8_prelu_lin(zx: xq.zeroPoint, pp: pos.p1, qp: pos.c, shift: Int32(shift)), table, entries)
    }
    return nil
  }

  /// Where entry `e` of a channel period goes in `linearForm16`'s table:
  /// add_prelu16_row reads each group of 16 as the vpunpck{l,h}wd halves of
  /// its elements, [0-3, 8-11] then [4-7, 12-15] (the middle quads swapped).
  /// Where the period is a multiple of 32, each group of 32 holds the first
  /// halves of its two groups of 16, then their second halves, so that one
  /// 512-bit load reads a half of 32 elements.
  @inline(__always)
  static func slot16(_ e: Int, period: Int) -> Int {
    let k = e & 15
    let s = k >= 4 && k < 12 ? k ^ 12 : k
    guard period % 32 == 0 else { return (e & ~15) | s }
    return (e & ~31) | (s & 8) << 1 | (e & 16) >> 1 | (s & 7)
  }

  /// The shifts of `linearForm16`: its slopes (about s_x / s_y times
  /// 2^shift) must stay within int16.
  static let shifts16: [Int] = [14, 13, 12, 11]

  /// `linearForm` for ti_q8_kernels add_prelu16_row: the pieces as
  /// functions of v = x - zp_x (v >= 0: (pp, qp); each channel's v < 0: its
  /// (pn, qn)) with pp and pn within int16, checked against `value` over
  /// every int8 x; nil where a piece has no such fit. `table` holds
  /// `entries` words pp & 0xffff | pn << 16, then as many qn (entries as in
  /// `linearForm`), each group of 16 or 32 in the kernel's order (`slot16`).
  static func linearForm16(
    _ xq: QParams, _ aq: QParams, _ yq: QParams, _ m1: FixedPoint.Multiplier, _ m2: FixedPoint.Multiplier,
    slope: UnsafePointer<Int8>, period: Int
  ) throws(TinfError) -> (params: ti_q8_prelu16, table: QBuffer, entries: Int)? {
    let fit = try FitBuffers(xq, aq, yq, period: period)
    defer { withExtendedLifetime(fit) {} }  // t points into fit.target
    let (zx, entries, table, t, sx, sn) = (fit.zx, fit.entries, fit.table, fit.target.int8, fit.sx, fit.sn)
    let small = -32767...32767
    shifts: for shift in shifts16 {
      // v >= 0 (x >= zp_x): the slope takes no part.
      for v in 0...(127 &- zx) { t[v] = value(Int32(v &+ zx), 0, xq, aq, yq, m1, m2) }
      guard let pos = QLinearFit.find(
        0...(127 &- zx), 0...0, UnsafePointer(t), slope1: sx, slope2: 0, shift: shift, lo: -128, hi: 127),
        small.contains(Int(pos.p1))
      else { continue }
      // Channels with the same int8 slope share their fit (computed once).
      var fitted = [QLinearFit?](repeating: nil, count: 256)
      for ch in 0..<period {
        var neg = QLinearFit(p1: 0, p2: 0, c: 0)
        if zx > -128 {
          let av = Int32(slope[ch])
          if let f = fitted[Int(av) &+ 128] {
            neg = f
          } else {
            let r = (-128 &- zx)...(-1)
            for v in r { t[v &- r.lowerBound] = value(Int32(v &+ zx), av, xq, aq, yq, m1, m2) }
            guard let f = QLinearFit.find(
              r, 0...0, UnsafePointer(t), slope1: sn * Double(av &- aq.zeroPoint), slope2: 0, shift: shift,
              lo: -128, hi: 127), small.contains(Int(f.p1))
            else { continue shifts }
            fitted[Int(av) &+ 128] = f
            neg = f
          }
        }
        let word = Int32(bitPattern: UInt32(UInt16(truncatingIfNeeded: pos.p1)) | UInt32(bitPattern: neg.p1) << 16)
        for e in stride(from: ch, to: entries, by: period) {
          let slot = slot16(e, period: entries)
          table.int32[slot] = word
          table.int32[entries &+ slot] = neg.c
        }
      }
      return (ti_q8_prelu16(qp: pos.c, shift: Int32(shift)), table, entries)
    }
    return nil
  }

  /// prelu.cc: float products and quotients of the float scales, then QuantizeMultiplier.
  static func multipliers(_ xq: QParams, _ aq: QParams, _ yq: QParams) throws(TinfError) -> (
    FixedPoint.Multiplier, FixedPoint.Multiplier
  ) {
    (
      try FixedPoint.requantization(Double(xq.scale / yq.scale), "PRelu"),
      try FixedPoint.requantization(Double(xq.scale * aq.scale / yq.scale), "PRelu")
    )
  }

  /// y[i] = PRelu(x[i], a[i % period]) for i < total (y may be x): the
  /// level's fixed-point row, the tail element by element.
  @inline(__always)
  static func runPeriodic(
    _ x: UnsafePointer<Int8>, _ a: UnsafePointer<Int8>, _ period: Int, _ y: UnsafeMutablePointer<Int8>, _ total: Int,
    _ xq: QParams, _ aq: QParams, _ yq: QParams, _ m1: FixedPoint.Multiplier, _ m2: FixedPoint.Multiplier
  ) {
    let params = ti_q8_prelu(
      zx: xq.zeroPoint, za: aq.zeroPoint, m1: m1.multiplier, s1: m1.shift, m2: m2.multiplier, s2: m2.shift,
      zy: yq.zeroPoint)
    var i = withUnsafePointer(to: params) { ti_q8_kernels_get().pointee.prelu_row(x, a, period, y, total, $0) }
    while i < total {
      y[i] = value(Int32(x[i]), Int32(a[i % period]), xq, aq, yq, m1, m2)
      i &+= 1
    }
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let ad = ctx.inputs[1] else { throw .format("missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let aq = try QCheck.perTensor(ad, "slope")
    let yq = try QCheck.output(ctx)
    let (m1, m2) = try multipliers(xq, aq, yq)
    let plan = BroadcastPlan(xd.shape, ad.shape, ctx.outputs[0].shape)
    guard let xp = ctx.inputData[0], let ap = ctx.inputData[1] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let a = UnsafePointer(ap.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)

    let params = ti_q8_prelu(
      zx: xq.zeroPoint, za: aq.zeroPoint, m1: m1.multiplier, s1: m1.shift, m2: m2.multiplier, s2: m2.shift,
      zy: yq.zeroPoint)
    let row = ti_q8_kernels_get().pointee.prelu_row
    // A slope that varies along the last (merged) dim only (per channel): the whole tensor is one run
    // whose slope repeats with that period.
    let d = plan.dims
    let periodic = d.count == 2 && plan.sb == [0, 1] && plan.sa == [d[1], 1]
    let total = plan.total
    if periodic && ad.isConstant,
      let lin = try linearForm(xq, aq, yq, m1, m2, slope: a, period: d[1])
    {
      let linRow = ti_q8_kernels_get().pointee.prelu_lin_row
      return { () throws(TinfError) in
        withExtendedLifetime(lin.table) {
          withUnsafePointer(to: lin.params) { p in
            let pn = UnsafePointer(lin.table.int32)
            let period = d[1]
            var i = linRow(x, pn, pn + lin.entries, lin.entries, y, total, p)
            while i < total {
              y[i] = value(Int32(x[i]), Int32(a[i % period]), xq, aq, yq, m1, m2)
              i &+= 1
            }
          }
        }
      }
    }
    return { () throws(TinfError) in
      if periodic {
        runPeriodic(x, a, d[1], y, total, xq, aq, yq, m1, m2)
        return
      }
      withUnsafePointer(to: params) { p in
        plan.forEachRow { offX, _, offA, ia, out, n in
          // x has the output's shape: its rows are contiguous; the slope's stride is 0 or 1.
          let xr = x + offX
          let ar = a + offA
          let yr = y + out
          var i = row(xr, ar, ia == 0 ? 1 : n, yr, n, p)
          while i < n {
            yr[i] = value(Int32(xr[i]), Int32(ar[i &* ia]), xq, aq, yq, m1, m2)
            i &+= 1
          }
        }
      }
    }
  }
}
