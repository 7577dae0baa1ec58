/// Fuses a constant-zero Pad of the spatial dims (H, W of NHWC) into the
/// float32 Conv2D or DepthwiseConv2D (`OpFamily.linear` with pads) that
/// reads it, when the convolution has VALID or explicit padding (padding 0
/// or 2; SAME depends on the input size, so it is left alone) and is the
/// Pad's only reader: the convolution gets explicit pads (its own plus the
/// Pad's) and reads the Pad's input. The kernels treat padding as zeros, so
/// the outputs are the same.
enum PadFusion {
  static func run(_ p: inout PassGraph) {
    for k in p.nodes.indices {
      guard let pad = p.nodes[k], pad.op == .pad, let x = pad.inputs.first, x >= 0,
        p.tensors[x].dtype == .float32, p.tensors[x].shape.count == 4,
        (try? pad.attrs.int(.mode, default: 0)) == 0,
        let value = try? pad.attrs.float(.value, default: 0), value.bitPattern == 0,
        let amounts = try? pad.attrs.ints(.pads), amounts.count == 8,
        amounts[0] == 0, amounts[1] == 0, amounts[6] == 0, amounts[7] == 0
      else { continue }
      let y = pad.outputs[0]
      let readers = p.readers(y)
      guard readers.count == 1, !p.isOutput(y), let c = readers.first, var conv = p.nodes[c],
        case .linear(_, true) = conv.op.traits.family, conv.inputs[0] == y, p.isFloat(c),
        let padding = try? conv.attrs.int(.padding, default: 0), padding == 0 || padding == 2
      else { continue }
      var pads = padding == 2 ? ((try? conv.attrs.ints(.pads)) ?? [0, 0, 0, 0]) : [0, 0, 0, 0]
      guard pads.count == 4 else { continue }
      // Conv pads: [top, bottom, left, right]; Pad: [before, after] per dim.
      for i in 0..<4 { pads[i] += amounts[2 + i] }
      guard pads.allSatisfy({ $0 <= 1 << 20 }) else { continue }  // the attribute's range
      conv.attrs[.padding] = .int(2)
      conv.attrs[.pads] = .ints(pads.map { Int64($0) })
      conv.inputs[0] = x
      p.nodes[c] = conv
      p.nodes[k] = nil
      p.report.append("fuse Pad '\(p.tensors[y].name)' into \(p.label(c)) (explicit pads \(describe(pads)))")
    }
  }
}
