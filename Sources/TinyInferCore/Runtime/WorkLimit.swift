/// The work of one run, computed when a session is made, so that a small
/// file cannot ask for hours of computation (docs/format.md, Limits).
///
/// An op's cost is its multiply-adds (the convolutions, FullyConnected,
/// MatMul), its window visits (pooling: output cells x window), or else its
/// element visits (the elements of its inputs plus those of its outputs).
/// Sums saturate at UInt64.max.
public enum WorkCost {
  /// The default limit of a session's work per run: 2^33 (about 8.6e9)
  /// multiply-adds or element visits. The largest model of the benchmark
  /// suite needs 2.0e7 (MobileNetV2 int8-static), ResNet-50 at batch 1
  /// 4.1e9. On the 2-core x86-64 test machine a float Conv2D does about
  /// 6e10 multiply-adds per second and MaxPool2D 7e8 window visits, so a
  /// run under the limit takes at most about 12 s (a pooling-only model)
  /// and a file asking for more is refused when the session is made.
  public static let defaultLimit: UInt64 = 1 << 33

  /// The cost of one op with these input (nil: absent) and output tensors.
  public static func of(_ node: Node, inputs: [TensorDesc?], outputs: [TensorDesc]) -> UInt64 {
    var outCount: UInt64 = 0
    for t in outputs { outCount = add(outCount, UInt64(t.count)) }
    let x = inputs.first ?? nil
    let w = inputs.count > 1 ? inputs[1] : nil
    let op = node.op
    if op == .conv2D, let w, let cout = w.shape.first, cout > 0 {
      return mul(outCount, UInt64(w.count / cout))  // KH x KW x Cin per group
    }
    if op == .depthwiseConv2D, let w, let c = w.shape.last, c > 0 {
      return mul(outCount, UInt64(w.count / c))  // KH x KW
    }
    if op == .transposeConv2D, let x, let w, let cin = x.shape.last, cin > 0 {
      return mul(UInt64(x.count), UInt64(w.count / cin))  // each input cell: KH x KW x Cout
    }
    if op == .fullyConnected, let x, let n = outputs.first?.shape.last {
      return mul(UInt64(x.count), UInt64(n))  // rows x K x N
    }
    if op == .matMul, let x, x.shape.count >= 2 {
      let ta = (try? node.attrs.int(.transposeA, default: 0, in: 0...1)) ?? 0
      let k = ta == 1 ? x.shape[x.shape.count - 2] : x.shape[x.shape.count - 1]
      return mul(outCount, UInt64(k))
    }
    if op == .lstm || op == .gru, let c = RecurrentKernel.work(inputs) {
      return c  // steps x directions x gates x hidden x (input + hidden)
    }
    if op == .maxPool2D || op == .averagePool2D {
      let f = (try? node.attrs.ints(.filter, count: 2, default: [1, 1], in: 1...(1 << 20))) ?? [1, 1]
      return mul(outCount, mul(UInt64(f[0]), UInt64(f[1])))
    }
    var visits = outCount
    for case let t? in inputs { visits = add(visits, UInt64(t.count)) }
    return visits
  }

  /// The cost of a run of `g`: the sum of its ops' costs.
  public static func of(_ g: Graph) -> UInt64 {
    var total: UInt64 = 0
    for node in g.nodes {
      let c = of(node, inputs: node.inputs.map { $0 >= 0 ? g.tensors[$0] : nil }, outputs: node.outputs.map { g.tensors[$0] })
      total = add(total, c)
    }
    return total
  }

  @inline(__always) static func add(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? .max : r
  }

  @inline(__always) static func mul(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? .max : r
  }
}
