/// The one place that maps an op to its shape inference and its kernel. The
/// switches are exhaustive: adding an `OpKind` case without a kernel does not
/// compile.
public enum Registry {
  /// Checks the node's inputs and attributes and gives its outputs' types.
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    switch node.op {
    case .fullyConnected: return try FullyConnectedKernel.infer(node, inputs)
    case .matMul: return try MatMulKernel.infer(node, inputs)
    case .conv2D: return try Conv2DKernel.infer(node, inputs)
    case .depthwiseConv2D: return try DepthwiseConv2DKernel.infer(node, inputs)
    case .transposeConv2D: return try TransposeConv2DKernel.infer(node, inputs)
    case .maxPool2D, .averagePool2D: return try PoolKernel.infer(node, inputs)
    case .mean: return try MeanKernel.infer(node, inputs)
    case .add, .sub, .mul, .div, .maximum, .minimum, .prelu: return try BinaryKernel.infer(node, inputs)
    case .relu, .relu6, .leakyRelu, .hardSwish, .logistic, .tanh, .gelu, .exp, .log, .sqrt, .rsqrt:
      return try UnaryKernel.infer(node, inputs)
    case .softmax, .logSoftmax: return try SoftmaxKernel.infer(node, inputs)
    case .layerNorm: return try LayerNormKernel.infer(node, inputs)
    case .batchNorm: return try BatchNormKernel.infer(node, inputs)
    case .reshape, .squeeze, .expandDims: return try ReshapeKernel.infer(node, inputs)
    case .transpose: return try TransposeKernel.infer(node, inputs)
    case .concat: return try ConcatKernel.infer(node, inputs)
    case .split: return try SplitKernel.infer(node, inputs)
    case .slice, .stridedSlice: return try SliceKernel.infer(node, inputs)
    case .pad: return try PadKernel.infer(node, inputs)
    case .gather: return try GatherKernel.infer(node, inputs)
    case .resizeBilinear, .resizeNearest: return try ResizeKernel.infer(node, inputs)
    case .depthToSpace, .spaceToDepth: return try SpaceDepthKernel.infer(node, inputs)
    case .quantize, .dequantize: return try QuantizeKernel.infer(node, inputs)
    }
  }

  /// Binds the node's kernel to its data. Called once per session, after
  /// `infer` accepted the node, so shapes and attributes are valid here.
  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    switch ctx.node.op {
    case .fullyConnected: return try FullyConnectedKernel.bind(ctx)
    case .matMul: return try MatMulKernel.bind(ctx)
    case .conv2D: return try Conv2DKernel.bind(ctx)
    case .depthwiseConv2D: return try DepthwiseConv2DKernel.bind(ctx)
    case .transposeConv2D: return try TransposeConv2DKernel.bind(ctx)
    case .maxPool2D, .averagePool2D: return try PoolKernel.bind(ctx)
    case .mean: return try MeanKernel.bind(ctx)
    case .add, .sub, .mul, .div, .maximum, .minimum, .prelu: return try BinaryKernel.bind(ctx)
    case .relu, .relu6, .leakyRelu, .hardSwish, .logistic, .tanh, .gelu, .exp, .log, .sqrt, .rsqrt:
      return try UnaryKernel.bind(ctx)
    case .softmax, .logSoftmax: return try SoftmaxKernel.bind(ctx)
    case .layerNorm: return try LayerNormKernel.bind(ctx)
    case .batchNorm: return try BatchNormKernel.bind(ctx)
    case .reshape, .squeeze, .expandDims: return try ReshapeKernel.bind(ctx)
    case .transpose: return try TransposeKernel.bind(ctx)
    case .concat: return try ConcatKernel.bind(ctx)
    case .split: return try SplitKernel.bind(ctx)
    case .slice, .stridedSlice: return try SliceKernel.bind(ctx)
    case .pad: return try PadKernel.bind(ctx)
    case .gather: return try GatherKernel.bind(ctx)
    case .resizeBilinear, .resizeNearest: return try ResizeKernel.bind(ctx)
    case .depthToSpace, .spaceToDepth: return try SpaceDepthKernel.bind(ctx)
    case .quantize, .dequantize: return try QuantizeKernel.bind(ctx)
    }
  }

  /// Whether output 0 may share input 0's buffer (when the planner finds
  /// input 0 dead after this op and the sizes equal). Kernels of these ops
  /// must give correct results when the two pointers are equal.
  static func mayRunInPlace(_ op: OpKind) -> Bool {
    switch op {
    case .relu, .relu6, .leakyRelu, .hardSwish, .logistic, .tanh, .gelu, .exp, .log, .sqrt, .rsqrt,
      .add, .sub, .mul, .div, .maximum, .minimum, .prelu, .batchNorm,
      .reshape, .squeeze, .expandDims:
      return true
    default:
      return false
    }
  }
}
