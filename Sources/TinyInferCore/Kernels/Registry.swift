/// The one place that maps an op to its shape inference and its kernel. The
/// switches are exhaustive: adding an `OpKind` case without a kernel does not
/// compile. Per-op facts (in place, prepacking, integer kernels) come from
/// `OpKind.traits` (Graph/OpTraits.swift).
public enum Registry {
  /// Checks the node's inputs and attributes and gives its outputs' types.
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    // Ops with integer kernels take them when input 0 is int8 (uint8 is
    // routed there too, to be refused with the reason).
    let q = quantized(inputs.first ?? nil)
    switch node.op {
    case .fullyConnected:
      return q ? try QFullyConnectedKernel.infer(node, inputs) : try FullyConnectedKernel.infer(node, inputs)
    case .matMul: return try MatMulKernel.infer(node, inputs)
    case .conv2D: return q ? try QConv2DKernel.infer(node, inputs) : try Conv2DKernel.infer(node, inputs)
    case .depthwiseConv2D:
      return q ? try QDepthwiseConv2DKernel.infer(node, inputs) : try DepthwiseConv2DKernel.infer(node, inputs)
    case .transposeConv2D:
      return q ? try QTransposeConv2DKernel.infer(node, inputs) : try TransposeConv2DKernel.infer(node, inputs)
    case .maxPool2D, .averagePool2D: return q ? try QPoolKernel.infer(node, inputs) : try PoolKernel.infer(node, inputs)
    case .mean, .reduceMax: return q ? try QReduceKernel.infer(node, inputs) : try ReduceKernel.infer(node, inputs)
    case .add, .sub, .mul, .div, .maximum, .minimum:
      if IntBinaryKernel.takes(inputs) { return try IntBinaryKernel.infer(node, inputs) }
      return q ? try QBinaryKernel.infer(node, inputs) : try BinaryKernel.infer(node, inputs)
    case .prelu: return q ? try QPReluKernel.infer(node, inputs) : try BinaryKernel.infer(node, inputs)
    case .relu, .relu6, .leakyRelu, .hardSwish, .logistic, .tanh, .gelu, .exp, .log, .sqrt, .rsqrt:
      return q ? try QActivationKernel.infer(node, inputs) : try UnaryKernel.infer(node, inputs)
    case .softmax, .logSoftmax: return q ? try QSoftmaxKernel.infer(node, inputs) : try SoftmaxKernel.infer(node, inputs)
    case .layerNorm: return try LayerNormKernel.infer(node, inputs)
    case .batchNorm: return try BatchNormKernel.infer(node, inputs)
    case .reshape, .squeeze, .expandDims: return try ReshapeKernel.infer(node, inputs)
    case .transpose: return try TransposeKernel.infer(node, inputs)
    case .concat:
      return inputs.first??.dtype == .int8 ? try QConcatKernel.infer(node, inputs) : try ConcatKernel.infer(node, inputs)
    case .split: return try SplitKernel.infer(node, inputs)
    case .slice, .stridedSlice: return try SliceKernel.infer(node, inputs)
    case .pad: return try PadKernel.infer(node, inputs)
    case .gather: return try GatherKernel.infer(node, inputs)
    case .resizeBilinear, .resizeNearest: return try ResizeKernel.infer(node, inputs)
    case .depthToSpace, .spaceToDepth: return try SpaceDepthKernel.infer(node, inputs)
    case .quantize, .dequantize: return try QuantizeKernel.infer(node, inputs)
    case .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual: return try CompareKernel.infer(node, inputs)
    case .logicalAnd, .logicalOr, .logicalXor, .logicalNot: return try LogicKernel.infer(node, inputs)
    case .select: return try SelectKernel.infer(node, inputs)
    case .floor, .ceil, .round, .erf: return try UnaryKernel.infer(node, inputs)
    case .cast: return try CastKernel.infer(node, inputs)
    case .shape: return try ShapeKernel.infer(node, inputs)
    case .reduceMin, .reduceProd, .reduceSum: return try ReduceKernel.infer(node, inputs)
    case .expand, .tile: return try ExpandKernel.infer(node, inputs)
    case .range: return try RangeKernel.infer(node, inputs)
    case .lstm, .gru: return try RecurrentKernel.infer(node, inputs)
    case .readVariable, .assignVariable: return try VariableKernel.infer(node, inputs)
    case .ifThenElse, .whileLoop: return try ControlFlow.inferOutsideGraph(node, inputs)
    case .dynamicUpdateSlice: return try DynamicUpdateSliceKernel.infer(node, inputs)
    }
  }

  /// Binds the node's kernel to its data. Called once per session, after
  /// `infer` accepted the node, so shapes and attributes are valid here.
  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let q = quantized(ctx.inputs.first ?? nil)
    switch ctx.node.op {
    case .fullyConnected: return q ? try QFullyConnectedKernel.bind(ctx) : try FullyConnectedKernel.bind(ctx)
    case .matMul: return try MatMulKernel.bind(ctx)
    case .conv2D: return q ? try QConv2DKernel.bind(ctx) : try Conv2DKernel.bind(ctx)
    case .depthwiseConv2D: return q ? try QDepthwiseConv2DKernel.bind(ctx) : try DepthwiseConv2DKernel.bind(ctx)
    case .transposeConv2D: return q ? try QTransposeConv2DKernel.bind(ctx) : try TransposeConv2DKernel.bind(ctx)
    case .maxPool2D, .averagePool2D: return q ? try QPoolKernel.bind(ctx) : try PoolKernel.bind(ctx)
    case .mean, .reduceMax: return q ? try QReduceKernel.bind(ctx) : try ReduceKernel.bind(ctx)
    case .add, .sub, .mul, .div, .maximum, .minimum:
      if IntBinaryKernel.takes(ctx.inputs) { return try IntBinaryKernel.bind(ctx) }
      return q ? try QBinaryKernel.bind(ctx) : try BinaryKernel.bind(ctx)
    case .prelu: return q ? try QPReluKernel.bind(ctx) : try BinaryKernel.bind(ctx)
    case .relu, .relu6, .leakyRelu, .hardSwish, .logistic, .tanh, .gelu, .exp, .log, .sqrt, .rsqrt:
      return q ? try QActivationKernel.bind(ctx) : try UnaryKernel.bind(ctx)
    case .softmax, .logSoftmax: return q ? try QSoftmaxKernel.bind(ctx) : try SoftmaxKernel.bind(ctx)
    case .layerNorm: return try LayerNormKernel.bind(ctx)
    case .batchNorm: return try BatchNormKernel.bind(ctx)
    case .reshape, .squeeze, .expandDims: return try ReshapeKernel.bind(ctx)
    case .transpose: return try TransposeKernel.bind(ctx)
    case .concat: return ctx.inputs.first??.dtype == .int8 ? try QConcatKernel.bind(ctx) : try ConcatKernel.bind(ctx)
    case .split: return try SplitKernel.bind(ctx)
    case .slice, .stridedSlice: return try SliceKernel.bind(ctx)
    case .pad: return try PadKernel.bind(ctx)
    case .gather: return try GatherKernel.bind(ctx)
    case .resizeBilinear: return q ? try QResizeKernel.bind(ctx) : try ResizeKernel.bind(ctx)
    case .resizeNearest: return try ResizeKernel.bind(ctx)
    case .depthToSpace, .spaceToDepth: return try SpaceDepthKernel.bind(ctx)
    case .quantize, .dequantize: return try QuantizeKernel.bind(ctx)
    case .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual: return try CompareKernel.bind(ctx)
    case .logicalAnd, .logicalOr, .logicalXor, .logicalNot: return try LogicKernel.bind(ctx)
    case .select: return try SelectKernel.bind(ctx)
    case .floor, .ceil, .round, .erf: return try UnaryKernel.bind(ctx)
    case .cast: return try CastKernel.bind(ctx)
    case .shape: return try ShapeKernel.bind(ctx)
    case .reduceMin, .reduceProd, .reduceSum: return try ReduceKernel.bind(ctx)
    case .expand, .tile: return try ExpandKernel.bind(ctx)
    case .range: return try RangeKernel.bind(ctx)
    case .lstm, .gru: return try RecurrentKernel.bind(ctx)
    case .readVariable, .assignVariable: return try VariableKernel.bind(ctx)
    case .ifThenElse, .whileLoop: return try ControlFlow.bind(ctx)
    case .dynamicUpdateSlice: return try DynamicUpdateSliceKernel.bind(ctx)
    }
  }

  /// Which variant of its family's kernel an op runs: one exhaustive map, so
  /// that the families' own switches are exhaustive over their variants and
  /// the compiler names every place a new op must be handled.
  enum Variant {
    case unary(UnaryOp)
    case binary(BinaryOp)
    case reshape(ReshapeOp)
    case slice(SliceOp)
    case compare(CompareOp)
    case logic(LogicOp)
    case reduce(ReduceOp)
    /// The op has a kernel of its own (or its family needs no variant).
    case own
  }

  static func variant(_ op: OpKind) -> Variant {
    switch op {
    case .relu: return .unary(.relu)
    case .relu6: return .unary(.relu6)
    case .leakyRelu: return .unary(.leakyRelu)
    case .hardSwish: return .unary(.hardSwish)
    case .logistic: return .unary(.logistic)
    case .tanh: return .unary(.tanh)
    case .gelu: return .unary(.gelu)
    case .exp: return .unary(.exp)
    case .log: return .unary(.log)
    case .sqrt: return .unary(.sqrt)
    case .rsqrt: return .unary(.rsqrt)
    case .floor: return .unary(.floor)
    case .ceil: return .unary(.ceil)
    case .round: return .unary(.round)
    case .erf: return .unary(.erf)
    case .equal: return .compare(.equal)
    case .notEqual: return .compare(.notEqual)
    case .less: return .compare(.less)
    case .lessEqual: return .compare(.lessEqual)
    case .greater: return .compare(.greater)
    case .greaterEqual: return .compare(.greaterEqual)
    case .logicalAnd: return .logic(.and)
    case .logicalOr: return .logic(.or)
    case .logicalXor: return .logic(.xor)
    case .logicalNot: return .logic(.not)
    case .mean: return .reduce(.mean)
    case .reduceMax: return .reduce(.max)
    case .reduceMin: return .reduce(.min)
    case .reduceSum: return .reduce(.sum)
    case .reduceProd: return .reduce(.prod)
    case .add: return .binary(.add)
    case .sub: return .binary(.sub)
    case .mul: return .binary(.mul)
    case .div: return .binary(.div)
    case .maximum: return .binary(.maximum)
    case .minimum: return .binary(.minimum)
    case .prelu: return .binary(.prelu)
    case .reshape: return .reshape(.reshape)
    case .squeeze: return .reshape(.squeeze)
    case .expandDims: return .reshape(.expandDims)
    case .slice: return .slice(.slice)
    case .stridedSlice: return .slice(.stridedSlice)
    case .fullyConnected, .matMul, .conv2D, .depthwiseConv2D, .transposeConv2D, .maxPool2D, .averagePool2D, .softmax, .logSoftmax, .layerNorm, .batchNorm, .transpose, .concat, .split, .pad, .gather,
      .resizeBilinear, .resizeNearest, .depthToSpace, .spaceToDepth, .quantize, .dequantize, .select, .cast, .shape,
      .expand, .tile, .range, .lstm, .gru, .readVariable, .assignVariable, .ifThenElse, .whileLoop,
      .dynamicUpdateSlice:
      return .own
    }
  }

  static func unaryOp(_ node: Node) throws(TinfError) -> UnaryOp {
    guard case .unary(let f) = variant(node.op) else { throw TinfError(.internal, "\(node.op.name) is not unary") }
    return f
  }

  static func compareOp(_ node: Node) throws(TinfError) -> CompareOp {
    guard case .compare(let f) = variant(node.op) else { throw TinfError(.internal, "\(node.op.name) is not a comparison") }
    return f
  }

  static func logicOp(_ node: Node) throws(TinfError) -> LogicOp {
    guard case .logic(let f) = variant(node.op) else { throw TinfError(.internal, "\(node.op.name) is not logical") }
    return f
  }

  static func reduceOp(_ node: Node) throws(TinfError) -> ReduceOp {
    guard case .reduce(let f) = variant(node.op) else { throw TinfError(.internal, "\(node.op.name) is not a reduction") }
    return f
  }

  static func binaryOp(_ node: Node) throws(TinfError) -> BinaryOp {
    guard case .binary(let f) = variant(node.op) else { throw TinfError(.internal, "\(node.op.name) is not binary") }
    return f
  }

  /// Weights to pack once at model load for a faster kernel, shared by every
  /// session (`OpTraits.prepack`): the [N, K] float32 matrix PackedGemm
  /// packs (`PackedWeights`, or the same panels mapped from a prepack image,
  /// Runtime/PrepackImage.swift). nil when these weights do not qualify.
  static func prepack(_ node: Node, _ inputs: [TensorDesc?], _ data: [UnsafeMutableRawPointer?])
    -> (weights: UnsafePointer<Float>, n: Int, k: Int)?
  {
    let kind = node.op.traits.prepack
    guard kind != .none, inputs.count >= 2, let x = inputs[0], let w = inputs[1], let wp = data[1], w.isConstant,
      x.dtype == .float32, w.dtype == .float32
    else { return nil }
    let weights = UnsafePointer(wp.assumingMemoryBound(to: Float.self))
    switch kind {
    case .none:
      return nil
    case .conv2D:
      // One group: [Cout, KH*KW*Cin].
      guard w.shape.count == 4, x.shape.count == 4, (try? node.attrs.int(.groups, default: 1)) == 1 else { return nil }
      return (weights, w.shape[0], w.shape[1] &* w.shape[2] &* w.shape[3])
    case .fullyConnected:
      // For any number of rows (a session may run another batch size than the file's),
      // except large weights of a one-row op (`FullyConnectedKernel.packsAtLoad`).
      guard w.shape.count == 2, (try? node.attrs.int(.weightFormat, default: 0)) == 0,
        FullyConnectedKernel.packsAtLoad(rows: x.count / max(w.shape[1], 1), n: w.shape[0], k: w.shape[1])
      else { return nil }
      return (weights, w.shape[0], w.shape[1])
    }
  }

  /// Whether the op runs an integer kernel on these inputs: its int8
  /// outputs then need quantization parameters from the file (checked at
  /// load by the graph validation).
  static func computesQuantized(_ node: Node, _ inputs: [TensorDesc?]) -> Bool {
    guard quantized(inputs.first ?? nil) else { return false }
    switch node.op.traits.int8 {
    case .none: return false
    case .always, .quantize: return true
    case .withParams: return inputs.first??.quant != nil  // without: a plain copy of int8 data
    }
  }

  /// Whether the op's integer output needs quantization parameters from the
  /// file: it computes quantized, or it is a Quantize (from any input).
  static func writesQuantized(_ node: Node, _ inputs: [TensorDesc?]) -> Bool {
    node.op.traits.int8 == .quantize || computesQuantized(node, inputs)
  }

  /// Whether a tensor is quantized 8-bit data (the integer kernels' input).
  @inline(__always)
  static func quantized(_ t: TensorDesc?) -> Bool {
    guard let t else { return false }
    return t.dtype == .int8 || t.dtype == .uint8
  }
}
