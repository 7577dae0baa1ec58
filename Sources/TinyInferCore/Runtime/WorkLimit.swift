/// The work of one run, computed when a session is made, so that a small
/// file cannot ask for hours of computation (docs/format.md, Limits).
///
/// An op's cost is its element visits (the elements of its inputs plus those
/// of its outputs), or more where the op does more per element: the
/// multiply-adds of the convolutions, FullyConnected and MatMul, the window
/// visits of pooling (output cells x window). A run also copies its graph
/// inputs in and its outputs out (and a session zeroes its inputs when it is
/// made): their elements count too, so a graph with no op, or I/O tensors no
/// op touches, is not free. Sums saturate at UInt64.max.
public enum WorkCost {
  /// The default limit of a session's work per run: 2^33 (about 8.6e9)
  /// multiply-adds or element visits. The largest model of the benchmark
  /// suite needs 2.0e7 (MobileNetV2 int8-static), ResNet-50 at batch 1
  /// 4.1e9. On the 2-core x86-64 test machine a float Conv2D does about
  /// 6e10 multiply-adds per second and MaxPool2D 7e8 window visits, so a
  /// run under the limit takes at most about 12 s (a pooling-only model)
  /// and a file asking for more is refused when the session is made.
  public static let defaultLimit: UInt64 = 1 << 33

  /// The cost of one op with these input (nil: absent) and output tensors:
  /// the larger of its element visits and its own count (multiply-adds,
  /// window visits), so no op is cheaper than reading its inputs and
  /// writing its outputs.
  public static func of(_ node: Node, inputs: [TensorDesc?], outputs: [TensorDesc]) -> UInt64 {
    var outCount: UInt64 = 0
    for t in outputs { outCount = add(outCount, UInt64(t.count)) }
    var visits = outCount
    for case let t? in inputs { visits = add(visits, UInt64(t.count)) }
    let x = inputs.first ?? nil
    let w = inputs.count > 1 ? inputs[1] : nil
    var own: UInt64 = 0
    switch node.op {
    case .conv2D:
      if let w, let cout = w.shape.first, cout > 0 { own = mul(outCount, UInt64(w.count / cout)) }  // KH x KW x Cin per group
    case .depthwiseConv2D:
      if let w, let c = w.shape.last, c > 0 { own = mul(outCount, UInt64(w.count / c)) }  // KH x KW
    case .transposeConv2D:
      if let x, let w, let cin = x.shape.last, cin > 0 { own = mul(UInt64(x.count), UInt64(w.count / cin)) }  // each input cell: KH x KW x Cout
    case .fullyConnected:
      if let x, let n = outputs.first?.shape.last { own = mul(UInt64(x.count), UInt64(n)) }  // rows x K x N
    case .matMul:
      if let x, x.shape.count >= 2 {
        let ta = (try? node.attrs.int(.transposeA, default: 0, in: 0...1)) ?? 0
        let k = ta == 1 ? x.shape[x.shape.count - 2] : x.shape[x.shape.count - 1]
        own = mul(outCount, UInt64(k))
      }
    case .lstm, .gru:
      own = RecurrentKernel.work(inputs) ?? 0  // steps x directions x gates x hidden x (input + hidden)
    case .maxPool2D, .averagePool2D:
      let f = (try? node.attrs.ints(.filter, count: 2, default: [1, 1], in: 1...(1 << 20))) ?? [1, 1]
      own = mul(outCount, mul(UInt64(f[0]), UInt64(f[1])))
    // A constant number of passes over their inputs and outputs.
    case .mean, .add, .sub, .mul, .div, .maximum, .minimum, .relu, .relu6, .leakyRelu, .prelu, .hardSwish,
      .logistic, .tanh, .gelu, .exp, .log, .sqrt, .rsqrt, .softmax, .logSoftmax, .layerNorm, .batchNorm,
      .reshape, .squeeze, .expandDims, .transpose, .concat, .split, .slice, .stridedSlice, .pad, .gather,
      .resizeBilinear, .resizeNearest, .depthToSpace, .spaceToDepth, .quantize, .dequantize, .reduceMax,
      .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual, .logicalAnd, .logicalOr, .logicalXor,
      .logicalNot, .select, .floor, .ceil, .round, .cast, .shape, .reduceMin, .reduceProd, .reduceSum,
      .expand, .tile, .range, .erf, .readVariable, .assignVariable, .dynamicUpdateSlice:
      own = 0
    // Their subgraphs' work is charged as they run (Runtime/ControlFlow.swift, WorkMeter).
    case .ifThenElse, .whileLoop:
      own = 0
    }
    return max(visits, own)
  }

  /// The cost of a run of `g`: the sum of its ops' costs plus the elements
  /// of its graph inputs and outputs (copied in and out by every run).
  public static func of(_ g: Graph) -> UInt64 {
    var total: UInt64 = 0
    for t in g.inputs { total = add(total, UInt64(g.tensors[t].count)) }
    for t in g.outputs { total = add(total, UInt64(g.tensors[t].count)) }
    for node in g.nodes {
      let c = of(node, inputs: node.inputs.map { $0 >= 0 ? g.tensors[$0] : nil }, outputs: node.outputs.map { g.tensors[$0] })
      total = add(total, c)
    }
    return total
  }

  /// Refuses `work` over `limit`, naming both.
  static func check(_ work: UInt64, _ limit: UInt64) throws(TinfError) {
    guard work <= limit else {
      throw .arg(
        "the model needs \(work) multiply-adds or element visits per run, over the work limit of \(limit) "
          + "(raise it with tinf_options_set_max_work, Python max_work=)")
    }
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
