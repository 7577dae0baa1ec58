/// Mean (docs/ops.md): the mean over `axes` (negative counts from the end,
/// duplicates refused; none given: nothing is reduced), `keep_dims` 0/1.
///
/// Dims of size 1 are dropped and neighbouring dims of the same kind (kept or
/// reduced) merged, so the input is walked once in memory order, in runs of
/// the innermost merged dim. Sums are accumulated in Double.
enum MeanKernel {
  /// Which dims of `x` are reduced.
  static func reducedDims(_ node: Node, _ x: TensorDesc) throws(TinfError) -> [Bool] {
    let rank = x.shape.count
    var reduced = [Bool](repeating: false, count: rank)
    let axes = try node.attrs.ints(.axes, in: -(1 << 20)...(1 << 20)) ?? []
    for a in axes {
      let i = try normalizeAxis(a, rank: rank, "axis")
      guard !reduced[i] else { throw .unsupported("axis \(a) is repeated in axes") }
      reduced[i] = true
    }
    return reduced
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try requireFloat(x, "input")
    let reduced = try reducedDims(node, x)
    let keep = try node.attrs.int(.keepDims, default: 0, in: 0...1) == 1
    var shape: [Int] = []
    for (i, d) in x.shape.enumerated() {
      if !reduced[i] {
        shape.append(d)
      } else if keep {
        shape.append(1)
      }
    }
    return [TensorType(.float32, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("Mean: missing input") }
    let reduced = try reducedDims(ctx.node, xd)
    let layout = ReductionLayout(shape: xd.shape, reduced: reduced)
    let (sizes, reduceCount, outStrides, outCount) = (layout.sizes, layout.reduceCount, layout.outStrides, layout.outCount)
    let (inner, innerReduced, outerGroups, outer) = (layout.inner, layout.innerReduced, layout.outerGroups, layout.outer)
    let sizeTable = IntTable(sizes)
    let strideTable = IntTable(outStrides)
    let sums = try Scratch<Double>(count: outCount)
    let divisor = Double(reduceCount)
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)

    return { () throws(TinfError) in
      let s = sums.base
      s.update(repeating: 0, count: outCount)
      let sz = sizeTable.base
      let st = strideTable.base
      for t in 0..<outer {
        // Output offset of this run: decompose t over the outer merged dims.
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
          var total = 0.0
          for i in 0..<inner { total += Double(xs[i]) }
          s[off] += total
        } else {
          let so = s + off
          for i in 0..<inner { so[i] += Double(xs[i]) }
        }
      }
      for i in 0..<outCount {
        y[i] = Float(s[i] / divisor)
      }
    }
  }
}

/// A reduction's iteration, shared by the float and integer Mean: size-1
/// dims dropped, neighbouring dims of the same kind (reduced or kept)
/// merged, with each merged dim's stride in the output (0 when reduced).
struct ReductionLayout {
  var sizes: [Int] = []
  var kinds: [Bool] = []
  var reduceCount = 1
  var outStrides: [Int]
  var outCount: Int
  var inner: Int { sizes[sizes.count - 1] }
  var innerReduced: Bool { kinds[kinds.count - 1] }
  var outerGroups: Int { sizes.count - 1 }
  var outer: Int { sizes.dropLast().reduce(1, &*) }

  init(shape: [Int], reduced: [Bool]) {
    for (i, d) in shape.enumerated() where d > 1 {
      if reduced[i] { reduceCount &*= d }
      if let last = kinds.last, last == reduced[i] {
        sizes[sizes.count - 1] &*= d
      } else {
        sizes.append(d)
        kinds.append(reduced[i])
      }
    }
    if sizes.isEmpty {
      sizes = [1]
      kinds = [false]
    }
    var strides = [Int](repeating: 0, count: sizes.count)
    var acc = 1
    for g in stride(from: sizes.count - 1, through: 0, by: -1) where !kinds[g] {
      strides[g] = acc
      acc &*= sizes[g]
    }
    outStrides = strides
    outCount = acc
  }
}

