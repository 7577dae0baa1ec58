import TinyInferShims

/// Pad (docs/ops.md): `pads` = [before0, after0, before1, after1, ...] (>= 0),
/// `mode` 0 constant (`value`, default 0), 1 reflect (edge not repeated,
/// pads < dim), 2 symmetric (edge repeated, pads <= dim). Any dtype.
///
/// `value` is a real number: float32 takes it as is, float16 rounded to
/// half; integer dtypes accept only 0, which for a quantized tensor is its
/// zero point (as TFLite pads quantized tensors), else raw 0.
enum PadKernel {
  struct Params {
    var pads: [Int]
    var mode: Int
    var shape: [Int]
    /// The fill element's bytes (little-endian, `dtype.size` of them).
    var fill: UInt64
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    let p = try params(node.attrs, x)
    try checkMoveShape(p.shape)
    var qAxis: Int? = nil
    if let a = x.quant?.axis, a >= 0, a < x.shape.count, p.pads[2 * a] == 0, p.pads[2 * a + 1] == 0 { qAxis = a }
    let q = try movedQuant(x.quant, to: qAxis, "the pad extends the quantized dim")
    return [TensorType(x.dtype, p.shape, quant: q)]
  }

  static func params(_ attrs: Attributes, _ x: TensorDesc) throws(TinfError) -> Params {
    let rank = x.shape.count
    guard let pads = try attrs.ints(.pads, in: 0...attrLimit) else { throw .unsupported("Pad needs the attribute pads") }
    guard pads.count == 2 * rank else {
      throw .unsupported("attribute pads has \(pads.count) values; a rank-\(rank) input needs \(2 * rank)")
    }
    let mode = try attrs.int(.mode, default: 0, in: 0...2)
    var shape = x.shape
    for i in 0..<rank {
      let n = x.shape[i]
      let (b, a) = (pads[2 * i], pads[2 * i + 1])
      if mode == 1 && (b > n - 1 || a > n - 1) {
        throw .unsupported("reflect pad (\(b), \(a)) on dim \(i) of size \(n): pads must be < the dim")
      }
      if mode == 2 && (b > n || a > n) {
        throw .unsupported("symmetric pad (\(b), \(a)) on dim \(i) of size \(n): pads must be <= the dim")
      }
      shape[i] = n + b + a  // each term <= 2^40: no overflow; the count is checked by the caller
    }
    var fill: UInt64 = 0
    if mode == 0 {
      let value = try attrs.float(.value, default: 0)
      switch x.dtype {
      case .float32:
        fill = UInt64(value.bitPattern)
      case .float16:
        fill = UInt64(halfBits(value))
      default:
        guard value == 0 else {
          throw .unsupported("pad value \(value) on a \(x.dtype.name) tensor: only 0 is supported for non-float dtypes")
        }
        if let q = x.quant, let zp = q.zeroPoints.first {
          for z in q.zeroPoints where z != zp {
            throw .unsupported("padding a per-axis quantized tensor whose zero points differ")
          }
          let (lo, hi): (Int64, Int64)
          switch x.dtype {
          case .int8: (lo, hi) = (-128, 127)
          case .uint8, .bool: (lo, hi) = (0, 255)
          case .int16: (lo, hi) = (-32768, 32767)
          case .int32: (lo, hi) = (Int64(Int32.min), Int64(Int32.max))
          default: (lo, hi) = (Int64.min, Int64.max)
          }
          guard Int64(zp) >= lo && Int64(zp) <= hi else {
            throw .unsupported("zero point \(zp) does not fit \(x.dtype.name)")
          }
          let mask: UInt64 = x.dtype.size >= 8 ? ~0 : (1 << UInt64(8 * x.dtype.size)) - 1
          fill = UInt64(bitPattern: Int64(zp)) & mask
        }
      }
    }
    return Params(pads: pads, mode: mode, shape: shape, fill: fill)
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let x = ctx.inputs[0] else { throw TinfError(.internal, "missing input") }
    let p = try params(ctx.attrs, x)
    let es = x.dtype.size
    let s = try movePointer(ctx, 0)
    let d = ctx.outputData[0]
    let rank = x.shape.count
    let fill = p.fill
    let mode = p.mode

    // The innermost padded dim `k`: the dims after it are copied whole, as
    // blocks of `blk` bytes.
    var k = -1
    for i in 0..<rank where p.pads[2 * i] != 0 || p.pads[2 * i + 1] != 0 { k = i }
    if k < 0 {
      let bytes = x.nbytes
      return { () throws(TinfError) in d.copyMemory(from: s, byteCount: bytes) }
    }
    var blk = es
    for i in (k + 1)..<rank { blk = blk &* x.shape[i] }
    let n = x.shape[k]
    let before = p.pads[2 * k]
    let after = p.pads[2 * k + 1]
    let inRow = n &* blk
    let outRow = (before &+ n &+ after) &* blk
    let inStrides = stridesOf(x.shape)
    // Per outer dim (0..<k): for each output index the source index, or -1
    // (constant padding). maps[mapStart[i] + o].
    var maps: [Int] = []
    var mapStart: [Int] = []
    var outDims: [Int] = []
    var srcStride: [Int] = []
    var rows = 1
    for i in 0..<k {
      mapStart.append(maps.count)
      outDims.append(p.shape[i])
      srcStride.append(inStrides[i] &* es)
      rows = rows &* p.shape[i]
      for o in 0..<p.shape[i] { maps.append(sourceIndex(o - p.pads[2 * i], x.shape[i], mode)) }
    }
    // Inner padded dim: source index of each padding cell.
    var edge: [Int] = []
    for j in 0..<before { edge.append(sourceIndex(j - before, n, mode)) }
    for j in 0..<after { edge.append(sourceIndex(n + j, n, mode)) }
    let outBytes = p.shape.reduce(1, &*) &* es
    let pool = ctx.pool

    // Constant padding of 1-, 2-, 4- or 8-byte elements where no dim before
    // `k` is padded (the channel padding of a residual branch, float32 or
    // int8): output row r is input row r with fill around it, one C call
    // for all rows (the general loop below divides per row to find its
    // source and makes two calls); bits are copied as they are.
    var outerPadded = false
    for i in 0..<k where p.pads[2 * i] != 0 || p.pads[2 * i + 1] != 0 { outerPadded = true }
    if mode == 0 && !outerPadded {
      let g = ConstantRows(
        s: UnsafeRawPointer(s), d: d, rows: rows, inRow: inRow, outRow: outRow, before: before &* blk,
        after: after &* blk, fill: fill, pool: pool, outBytes: outBytes)
      switch es {
      case 1, 2, 4, 8: return g.kernel(es: es)
      default: break
      }
    }

    let work = { (range: Range<Int>) in
      for r in range {
        let out = d + r &* outRow
        // Source row, or nil when the row is padding.
        var rem = r
        var so = 0
        var inside = true
        var i = k - 1
        while i >= 0 {
          let o = rem % outDims[i]
          rem /= outDims[i]
          let si = maps[mapStart[i] &+ o]
          if si < 0 {
            inside = false
            break
          }
          so = so &+ si &* srcStride[i]
          i -= 1
        }
        if !inside {
          fillBytes(out, outRow, fill, es)
          continue
        }
        let row = s + so
        (out + before &* blk).copyMemory(from: row, byteCount: inRow)
        if mode == 0 {
          fillBytes(out, before &* blk, fill, es)
          fillBytes(out + (before &+ n) &* blk, after &* blk, fill, es)
        } else {
          for j in 0..<before { (out + j &* blk).copyMemory(from: row + edge[j] &* blk, byteCount: blk) }
          for j in 0..<after {
            (out + (before &+ n &+ j) &* blk).copyMemory(from: row + edge[before &+ j] &* blk, byteCount: blk)
          }
        }
      }
    }
    if pool.threads > 1 && rows > 1 && outBytes >= moveParallelBytes {
      let minChunk = max(1, rows &* moveChunkBytes / outBytes)
      return { () throws(TinfError) in pool.parallelRanges(rows, minChunk: minChunk, work) }
    }
    return { () throws(TinfError) in work(0..<rows) }
  }

  /// The input index that output index `j` (relative to the input's start)
  /// reads, or -1 for constant padding.
  static func sourceIndex(_ j: Int, _ n: Int, _ mode: Int) -> Int {
    if j >= 0 && j < n { return j }
    switch mode {
    case 1: return j < 0 ? -j : 2 * n - 2 - j
    case 2: return j < 0 ? -j - 1 : 2 * n - 1 - j
    default: return -1
    }
  }

  /// Constant padding of the innermost padded dim only (sizes in bytes).
  struct ConstantRows {
    let s: UnsafeRawPointer
    let d: UnsafeMutableRawPointer
    let rows: Int, inRow: Int, outRow: Int, before: Int, after: Int
    let fill: UInt64
    let pool: ThreadPool
    let outBytes: Int

    /// Rows of `es`-byte elements (1, 2, 4 or 8) through ti_shim_pad_rows:
    /// 16-byte pieces per row (a generic element loop here ran one byte at
    /// a time on int8 rows of 16 channels, 7 ns a row).
    func kernel(es: Int) -> KernelFn {
      let (s, d, inRow, outRow, before, after, fill) = (s, d, inRow, outRow, before, after, fill)
      let rowsWork = { (range: Range<Int>) in
        ti_shim_pad_rows(
          s + range.lowerBound &* inRow, d + range.lowerBound &* outRow, range.count, inRow, before, after, fill, es)
      }
      let (pool, rows) = (self.pool, self.rows)
      if pool.threads > 1 && rows > 1 && outBytes >= moveParallelBytes {
        let minChunk = max(1, rows &* moveChunkBytes / outBytes)
        return { () throws(TinfError) in pool.parallelRanges(rows, minChunk: minChunk, rowsWork) }
      }
      return { () throws(TinfError) in rowsWork(0..<rows) }
    }
  }

  /// Fills `bytes` bytes at `p` with the element `fill` of `es` bytes.
  @inline(__always)
  static func fillBytes(_ p: UnsafeMutableRawPointer, _ bytes: Int, _ fill: UInt64, _ es: Int) {
    if bytes <= 0 { return }
    if fill == 0 {
      p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
      return
    }
    switch es {
    case 4:
      let v = UInt32(truncatingIfNeeded: fill)
      for i in 0..<(bytes / 4) { p.storeBytes(of: v, toByteOffset: i &* 4, as: UInt32.self) }
    case 2:
      let v = UInt16(truncatingIfNeeded: fill)
      for i in 0..<(bytes / 2) { p.storeBytes(of: v, toByteOffset: i &* 2, as: UInt16.self) }
    case 8:
      for i in 0..<(bytes / 8) { p.storeBytes(of: fill, toByteOffset: i &* 8, as: UInt64.self) }
    default:
      p.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: fill), count: bytes)
    }
  }

  /// IEEE half bits of `v`, rounded to nearest even (overflow to infinity).
  static func halfBits(_ v: Float) -> UInt16 {
    let b = v.bitPattern
    let sign = UInt16((b >> 16) & 0x8000)
    let exp = Int((b >> 23) & 0xFF)
    let man = b & 0x7F_FFFF
    if exp == 0xFF { return sign | 0x7C00 | (man != 0 ? 0x200 : 0) }  // inf, NaN
    let e = exp - 127 + 15
    if e >= 0x1F { return sign | 0x7C00 }
    if e <= 0 {
      if e < -10 { return sign }
      let m = man | 0x80_0000
      let shift = UInt32(14 - e)
      var h = m >> shift
      let rest = m & ((1 << shift) - 1)
      let half = UInt32(1) << (shift - 1)
      if rest > half || (rest == half && (h & 1) == 1) { h += 1 }
      return sign | UInt16(h)
    }
    var h = UInt32(e) << 10 | (man >> 13)
    let rest = man & 0x1FFF
    if rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1) { h += 1 }  // may carry into the exponent: still right
    return sign | UInt16(h)
  }
}
