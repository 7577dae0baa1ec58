/// DepthToSpace and SpaceToDepth (docs/ops.md), NHWC, any dtype.
///
/// With block b, DepthToSpace maps x[n, h, w, ch(bh, bw, c)] to
/// y[n, h*b + bh, w*b + bw, c], SpaceToDepth is its inverse; `mode` 0 (DCR,
/// TensorFlow) has ch = (bh*b + bw)*C' + c, mode 1 (CRD) ch = c*b*b + bh*b + bw.
/// In DCR mode the C' channels of one block cell are contiguous on both
/// sides and move as one copy; in CRD mode they are strided by b*b.
enum SpaceDepthKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    try requireNHWC(x, "input")
    guard node.attrs[.blockSize] != nil else { throw .unsupported("attribute block_size is required") }
    let b = try node.attrs.int(.blockSize, default: 1, in: 1...(1 << 20))
    _ = try node.attrs.int(.mode, default: 0, in: 0...1)
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let bb = b * b  // <= 2^40
    if node.op == .depthToSpace {
      guard c % bb == 0 else {
        throw .shape("channels \(c) are not divisible by block_size^2 = \(bb)")
      }
      // h*b and w*b <= 2^54; the output size is checked by the caller.
      return [TensorType(x.dtype, [n, h * b, w * b, c / bb], quant: x.quant)]
    }
    guard h % b == 0, w % b == 0 else {
      throw .shape("height \(h) and width \(w) must be divisible by block_size \(b)")
    }
    // b <= h and b <= w, so c*b*b <= the input's element count.
    return [TensorType(x.dtype, [n, h / b, w / b, c * bb], quant: x.quant)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("DepthToSpace: missing input") }
    let b = try ctx.node.attrs.int(.blockSize, default: 1, in: 1...(1 << 20))
    let crd = try ctx.node.attrs.int(.mode, default: 0, in: 0...1) == 1
    let toSpace = ctx.node.op == .depthToSpace
    let size = xd.dtype.size
    // Work in the depth-side (small image) geometry: [N, SH, SW, b, b, C'] in DCR order.
    let n = xd.shape[0]
    let sh = toSpace ? xd.shape[1] : xd.shape[1] / b
    let sw = toSpace ? xd.shape[2] : xd.shape[2] / b
    let cp = toSpace ? xd.shape[3] / (b &* b) : xd.shape[3]
    let depthC = cp &* b &* b
    guard let input = ctx.inputData[0] else { throw .format("missing input data") }
    let src = UnsafeRawPointer(input)
    let dst = ctx.outputData[0]
    let pool = ctx.pool
    let rows = n &* sh
    let minChunk = minChunkFor(perItem: sw &* depthC &* max(size / 4, 1))

    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { _, range in
        for row in range {
          let bn = row / sh
          let hh = row &- bn &* sh
          for bh in 0..<b {
            for ww in 0..<sw {
              for bw in 0..<b {
                // Depth side: element offset of channel ch(bh, bw, 0).
                let depthPixel = (row &* sw &+ ww) &* depthC
                let cell = bh &* b &+ bw
                let depthOff = crd ? depthPixel &+ cell : depthPixel &+ cell &* cp
                let depthStride = crd ? b &* b : 1
                // Space side: pixel (bn, hh*b + bh, ww*b + bw).
                let spaceOff = ((bn &* sh &* b &+ hh &* b &+ bh) &* (sw &* b) &+ ww &* b &+ bw) &* cp
                if toSpace {
                  if crd {
                    copyElements(
                      size: size, dst + spaceOff &* size, src + depthOff &* size, cp, size, depthStride &* size)
                  } else {
                    (dst + spaceOff &* size).copyMemory(from: src + depthOff &* size, byteCount: cp &* size)
                  }
                } else {
                  if crd {
                    copyElements(
                      size: size, dst + depthOff &* size, src + spaceOff &* size, cp, depthStride &* size, size)
                  } else {
                    (dst + depthOff &* size).copyMemory(from: src + spaceOff &* size, byteCount: cp &* size)
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
