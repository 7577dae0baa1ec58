/// TODO: Quantize / Dequantize (issue 4).
enum QuantizeKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    throw .unsupported("not implemented yet")
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    throw .unsupported("not implemented yet")
  }
}
