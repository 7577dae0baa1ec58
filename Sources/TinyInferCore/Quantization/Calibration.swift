/// How the clipping range of an activation is chosen from what calibration saw.
public enum CalibrationMethod: Int, Sendable {
  /// The observed minimum and maximum.
  case minmax = 1
  /// The `percentile` and `100 - percentile` quantiles (99.99 by default).
  case percentile = 2
  /// The range, shrunk symmetrically about zero, that minimizes the mean
  /// squared error of int8 quantization over the histogram.
  case mse = 3
  /// TensorRT-style: the threshold on |x| minimizing the KL divergence
  /// between the histogram and its quantization to the int8 levels (128,
  /// or 255 for a tensor of one sign).
  case entropy = 4
}

/// The statistics of one float32 tensor over every calibration run: exact
/// min and max, and a histogram over [-range, range] whose range doubles
/// (merging bin pairs) when a larger value comes, so one pass suffices and
/// no sample is kept.
struct TensorStats {
  static let bins = 8192

  var count = 0
  /// Values exactly 0.
  var zeros = 0
  /// Infinite or NaN values (left out of every other statistic).
  var nonFinite = 0
  var lo = Float.infinity
  var hi = -Float.infinity
  /// Half-width of the histogram; 0 until a non-zero value was seen.
  var range: Float = 0
  var hist: [Double] = []

  mutating func add(_ p: UnsafePointer<Float>, _ n: Int) {
    if hist.isEmpty { hist = [Double](repeating: 0, count: TensorStats.bins) }
    var bl = Float.infinity
    var bh = -Float.infinity
    for i in 0..<n {
      let v = p[i]
      guard v.isFinite else {
        nonFinite += 1
        continue
      }
      if v < bl { bl = v }
      if v > bh { bh = v }
      if v == 0 { zeros += 1 }
    }
    guard bl <= bh else { return }
    count += n
    if bl < lo { lo = bl }
    if bh > hi { hi = bh }
    let amax = max(abs(bl), abs(bh))
    if range == 0 && amax > 0 { range = amax }
    while amax > range && range < Float.greatestFiniteMagnitude / 8 { grow() }
    let nb = TensorStats.bins
    if range == 0 {
      hist[nb / 2] += Double(n)
      return
    }
    let f = Float(nb) / (2 * range)
    hist.withUnsafeMutableBufferPointer { h in
      for i in 0..<n {
        let v = p[i]
        guard v.isFinite else { continue }
        let x = (v + range) * f
        let b = x <= 0 ? 0 : (x >= Float(nb) ? nb - 1 : Int(x))
        h[b] += 1
      }
    }
  }

  /// Doubles the range: bin j of the old histogram lands in bin nb/4 + j/2.
  private mutating func grow() {
    let nb = TensorStats.bins
    var h = [Double](repeating: 0, count: nb)
    for j in 0..<nb { h[nb / 4 + j / 2] += hist[j] }
    hist = h
    range *= 2
  }

  /// The share of the values that a mask or padding constant makes
  /// worthless in int8, or nil when none: with the observed range, the values
  /// are either within one int8 step of zero (nonzero ones: at least 5% of
  /// all), or in the outer half of the range, and at most 1% in between (a
  /// few extreme values set the range; int8 rounds the others to zero).
  func maskDominated() -> Double? {
    guard count > 0, range > 0, lo < hi else { return nil }
    let step = QuantNumerics.int8Params(lo: lo, hi: hi).scale
    // The histogram stops growing near the float32 limit (a finfo.min mask).
    let amax = min(max(-lo, hi), range)
    var near = 0.0
    var far = 0.0
    var total = 0.0
    for b in 0..<hist.count where hist[b] > 0 {
      let a = abs(binCenter(b))
      total += hist[b]
      if a <= step { near += hist[b] } else if a >= amax / 2 { far += hist[b] }
    }
    let lost = near - Double(zeros)
    guard total > 0, far > 0, lost >= 0.05 * total, total - near - far <= 0.01 * total else { return nil }
    return lost / total
  }

  var binWidth: Float { 2 * range / Float(TensorStats.bins) }
  func binCenter(_ b: Int) -> Float { -range + (Float(b) + 0.5) * binWidth }

  /// The clipping range for `method`.
  func clipRange(_ method: CalibrationMethod, percentile: Float) -> (lo: Float, hi: Float) {
    guard count > 0 else { return (0, 0) }
    guard range > 0, lo < hi else { return (lo, hi) }
    switch method {
    case .minmax: return (lo, hi)
    case .percentile: return percentileRange(percentile)
    case .mse: return mseRange()
    case .entropy: return entropyRange()
    }
  }

  private func percentileRange(_ p: Float) -> (lo: Float, hi: Float) {
    let total = hist.reduce(0, +)
    let q = Double(max(50, min(100, p))) / 100
    func quantile(_ f: Double) -> Float {
      let target = f * total
      var acc = 0.0
      for b in 0..<hist.count {
        let next = acc + hist[b]
        if next >= target && hist[b] > 0 {
          let frac = Float((target - acc) / hist[b])
          return -range + (Float(b) + frac) * binWidth
        }
        acc = next
      }
      return range
    }
    let l = max(lo, min(0, quantile(1 - q)))
    let h = min(hi, max(0, quantile(q)))
    return (min(l, h), max(l, h))
  }

  /// Expected squared error of int8 affine quantization with range [l, h]
  /// over the histogram (each bin at its centre).
  private func quantError(_ l: Float, _ h: Float) -> Double {
    let p = QuantNumerics.int8Params(lo: l, hi: h)
    let s = p.scale
    let z = Float(p.zeroPoint)
    var err = 0.0
    for b in 0..<hist.count where hist[b] > 0 {
      let c = binCenter(b)
      let q = max(-128, min(127, QuantNumerics.roundAway(c / s) + z))
      let d = (q - z) * s
      let e = Double(c - d)
      err += hist[b] * e * e
    }
    return err
  }

  private func mseRange() -> (lo: Float, hi: Float) {
    var best = (lo, hi)
    var bestErr = quantError(lo, hi)
    // Shrink both ends by the same factor, 1 down to 0.05.
    var i = 1
    while i < 96 {
      let a = 1 - Float(i) * 0.01
      let l = lo * a
      let h = hi * a
      let e = quantError(l, h)
      if e < bestErr {
        bestErr = e
        best = (l, h)
      }
      i += 1
    }
    return best
  }

  /// TensorRT's entropy calibration on the histogram of |x|.
  private func entropyRange() -> (lo: Float, hi: Float) {
    let nb = TensorStats.bins
    let half = nb / 2
    var absHist = [Double](repeating: 0, count: half)
    for i in 0..<half { absHist[i] = hist[half + i] + hist[half - 1 - i] }
    var last = half - 1
    while last > 0 && absHist[last] == 0 { last -= 1 }
    let m = last + 1
    // Levels the int8 quantizer really has on |x|: 255 for a one-signed
    // tensor (after a ReLU), about 128 per side otherwise (TensorRT's 128).
    let nq = (lo >= 0 || hi <= 0) ? 255 : 128
    guard m > nq else { return (lo, hi) }
    let step = max(1, (m - nq) / 512)
    var bestI = m
    var bestKL = Double.infinity
    var p = [Double](repeating: 0, count: m)
    var qd = [Double](repeating: 0, count: m)
    var i = nq
    while i <= m {
      // Reference: the first i bins, outliers folded into the last.
      var outliers = 0.0
      for j in i..<m { outliers += absHist[j] }
      for j in 0..<i { p[j] = absHist[j] }
      p[i - 1] += outliers
      // Candidate: the first i bins merged into nq levels, expanded back
      // over the non-empty bins of each level.
      for g in 0..<nq {
        let a = g * i / nq
        let b = (g + 1) * i / nq
        var sum = 0.0
        var nz = 0
        for j in a..<b where absHist[j] > 0 {
          sum += absHist[j]
          nz += 1
        }
        for j in a..<b { qd[j] = absHist[j] > 0 && nz > 0 ? sum / Double(nz) : 0 }
      }
      var ps = 0.0
      var qs = 0.0
      for j in 0..<i {
        ps += p[j]
        qs += qd[j]
      }
      var kl = 0.0
      if ps > 0 && qs > 0 {
        for j in 0..<i where p[j] > 0 {
          let pj = p[j] / ps
          let qj = qd[j] / qs
          // An empty candidate bin where the reference has mass: a large
          // finite penalty (TensorRT smooths the same way).
          kl += qj > 0 ? pj * flogd(pj / qj) : pj * 20
        }
      }
      if kl < bestKL {
        bestKL = kl
        bestI = i
      }
      i += step
    }
    let t = Float(bestI) * binWidth
    return (max(lo, -t), min(hi, t))
  }
}

@inline(__always) private func flogd(_ x: Double) -> Double { Double(flog(Float(x))) }

/// Collects `TensorStats` for a set of float32 tensors of a model by running
/// it on calibration inputs through `Session.run(observe:)`.
final class Calibrator {
  let model: Model
  let session: Session
  /// Indexed like the model's tensors; nil for tensors not observed.
  private(set) var stats: [TensorStats?]
  private(set) var samples = 0

  static func make(model: Model) throws(TinfError) -> Calibrator {
    let s = try Session.create(model: model)
    return Calibrator(model: model, session: s)
  }

  private init(model: Model, session: Session) {
    self.model = model
    self.session = session
    let g = model.graph
    var st = [TensorStats?](repeating: nil, count: g.tensors.count)
    for t in g.inputs where g.tensors[t].dtype == .float32 { st[t] = TensorStats() }
    for n in g.nodes {
      for t in n.outputs where g.tensors[t].dtype == .float32 { st[t] = TensorStats() }
    }
    stats = st
  }

  /// Runs the model once on `inputs` (one buffer per graph input, in order,
  /// of exactly the input's size) and records every float32 tensor.
  func observe(_ inputs: [UnsafeRawBufferPointer]) throws(TinfError) {
    let g = model.graph
    guard inputs.count == g.inputs.count else {
      throw .arg("the model takes \(g.inputs.count) inputs, got \(inputs.count)")
    }
    for (i, src) in inputs.enumerated() {
      let dst = session.inputBuffer(i)
      guard src.count == dst.count else { throw .arg("input \(i) takes \(dst.count) bytes, got \(src.count)") }
      if let d = dst.baseAddress, let s = src.baseAddress { d.copyMemory(from: s, byteCount: src.count) }
      let t = g.inputs[i]
      if stats[t] != nil, let b = dst.baseAddress {
        stats[t]!.add(UnsafePointer(b.assumingMemoryBound(to: Float.self)), g.tensors[t].count)
      }
    }
    try session.run { t, buf in
      guard stats[t] != nil, let b = buf.baseAddress else { return }
      stats[t]!.add(b.assumingMemoryBound(to: Float.self), buf.count / 4)
    }
    samples += 1
  }
}
