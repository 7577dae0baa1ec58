/// The .tinf container: reading and writing. The byte layout is documented in
/// docs/format.md; keep the two in step.
public enum ModelFile {
  public static let magic: [UInt8] = [0x54, 0x49, 0x4E, 0x46]  // "TINF"
  public static let versionMajor: UInt16 = 1
  /// The newest minor version this library reads and writes (1: sparse
  /// constants; 2: subgraphs); a file is written with the oldest minor that holds it.
  public static let versionMinor: UInt16 = 2
  public static let headerSize = 64
  public static let alignment = 64

  // Limits (docs/format.md, "Limits").
  static let maxTensors = 1 << 20
  static let maxOps = 1 << 20
  static let maxOpArity = 1 << 16
  static let maxAttrs = 256
  static let maxAttrElements = 1 << 20
  static let maxMetadata = 1 << 16
  static let maxNameBytes = 1 << 12
  static let maxSubgraphs = 1 << 10

  /// Where the parts of a file are, after the header is checked.
  public struct Layout: Sendable {
    public var minor: UInt16
    public var body: Range<Int>
    public var data: Range<Int>
  }

  /// Reads and checks the 64-byte header against the file's size.
  public static func readHeader(_ file: UnsafeRawBufferPointer) throws(TinfError) -> Layout {
    guard file.count >= headerSize else {
      throw .format("not a .tinf file: \(file.count) bytes is shorter than the \(headerSize)-byte header")
    }
    for i in 0..<4 where file[i] != magic[i] {
      throw .format("not a .tinf file: bad magic (expected 'TINF')")
    }
    var r = ByteReader(file)
    r.context = "header"
    try r.skip(4)
    let major = try r.u16()
    let minor = try r.u16()
    guard major == versionMajor else {
      throw TinfError(
        .version, "the file is .tinf version \(major).\(minor); this library reads major version \(versionMajor)")
    }
    let hsize = Int(try r.u32())
    _ = try r.u32()  // flags, reserved
    let bodyOff = try r.u64()
    let bodySize = try r.u64()
    let dataOff = try r.u64()
    let dataSize = try r.u64()
    let fileSize = try r.u64()
    guard hsize >= headerSize, hsize <= file.count else { throw .format("header size \(hsize) is invalid") }
    guard fileSize == UInt64(file.count) else {
      throw .format("the header says the file has \(fileSize) bytes but it has \(file.count) (truncated or padded)")
    }
    let size = UInt64(file.count)
    guard bodyOff >= UInt64(hsize), bodyOff <= size, bodySize <= size - bodyOff else {
      throw .format("graph section \(bodyOff)+\(bodySize) lies outside the file (\(size) bytes)")
    }
    guard dataOff <= size, dataSize <= size - dataOff else {
      throw .format("data section \(dataOff)+\(dataSize) lies outside the file (\(size) bytes)")
    }
    guard dataOff % UInt64(alignment) == 0 else { throw .format("data section offset \(dataOff) is not 64-byte aligned") }
    guard dataOff >= bodyOff + bodySize || dataSize == 0 else { throw .format("data section overlaps the graph section") }
    return Layout(
      minor: minor, body: Int(bodyOff)..<Int(bodyOff + bodySize), data: Int(dataOff)..<Int(dataOff + dataSize))
  }

  /// Parses the graph section. Nothing here trusts a count or an index: the
  /// graph validation (`Graph(validating:)`) checks the references.
  public static func readBody(_ body: UnsafeRawBufferPointer, minor: UInt16) throws(TinfError) -> GraphDef {
    var r = ByteReader(body)
    var def = GraphDef()

    r.context = "metadata"
    let nMeta = try r.count(minBytesEach: 8, max: maxMetadata, "metadata")
    for _ in 0..<nMeta {
      let k = try r.string(max: maxNameBytes, "metadata key")
      let v = try r.string("metadata value")
      def.metadata.append((k, v))
    }

    r.context = "tensor table"
    let nT = try r.count(minBytesEach: 12, max: maxTensors, "tensor table")
    def.tensors.reserveCapacity(nT)
    for i in 0..<nT {
      let name = try r.string(max: maxNameBytes, "tensor name")
      let code = try r.u8()
      var dtype: DType? = nil
      if code != 0 {
        guard let d = DType(rawValue: code) else {
          throw TinfError(.unsupportedDType, "tensor \(i) '\(name)' has unknown dtype code \(code)")
        }
        dtype = d
      }
      let flags = try r.u8()
      guard flags & ~UInt8(7) == 0 else { throw TinfError.format("tensor \(i) '\(name)' has unknown flags \(flags)") }
      guard flags & 4 == 0 || flags & 1 != 0 else {
        throw TinfError.format("tensor \(i) '\(name)' is marked sparse but is not a constant")
      }
      let rank = Int(try r.u8())
      _ = try r.u8()
      var shape: [Int]? = nil
      if flags & 2 != 0 {
        guard rank <= maxRank else { throw TinfError.format("tensor \(i) '\(name)' has rank \(rank) > \(maxRank)") }
        var s: [Int] = []
        for _ in 0..<rank { s.append(Int(try r.i64())) }
        shape = s
      } else if rank != 0 {
        throw TinfError.format("tensor \(i) '\(name)' has a rank but no shape flag")
      }
      var quant: Quantization? = nil
      let qkind = try r.u8()
      switch qkind {
      case 0:
        break
      case 1:
        let axis = Int(try r.i32())
        let nq = try r.count(minBytesEach: 8, max: maxAttrElements, "quantization of tensor \(i)")
        guard nq >= 1 else { throw TinfError.format("tensor \(i) '\(name)': quantization with no scales") }
        var scales: [Float] = []
        var zps: [Int32] = []
        for _ in 0..<nq { scales.append(try r.f32()) }
        for _ in 0..<nq { zps.append(try r.i32()) }
        for s in scales where !(s.isFinite && s > 0) {
          throw TinfError.format("tensor \(i) '\(name)': quantization scale \(s) is not finite and positive")
        }
        guard axis >= -1 && axis < maxRank else { throw TinfError.format("tensor \(i) '\(name)': bad quantization axis") }
        guard axis >= 0 || nq == 1 else { throw TinfError.format("tensor \(i) '\(name)': per-tensor with \(nq) scales") }
        quant = Quantization(axis: axis < 0 ? nil : axis, scales: scales, zeroPoints: zps)
      default:
        throw TinfError.format("tensor \(i) '\(name)' has unknown quantization kind \(qkind)")
      }
      var constant: Range<Int>? = nil
      if flags & 1 != 0 {
        let off = try r.u64()
        let size = try r.u64()
        guard off <= UInt64(Int.max / 2), size <= UInt64(maxTensorBytes) else {
          throw TinfError.format("tensor \(i) '\(name)' has an absurd data range")
        }
        constant = Int(off)..<(Int(off) + Int(size))
      }
      var sparseEntries: Int? = nil
      if flags & 4 != 0 {
        let encoding = try r.u8()
        guard encoding == SparseEncoding.code else {
          throw TinfError.format("tensor \(i) '\(name)' has unknown sparse encoding \(encoding)")
        }
        _ = try r.u8()
        _ = try r.u16()
        let entries = try r.u64()
        guard entries <= UInt64(maxTensorBytes) else { throw TinfError.format("tensor \(i) '\(name)' has \(entries) entries") }
        sparseEntries = Int(entries)
      }
      var spec = TensorSpec(name: name, dtype: dtype, shape: shape, quant: quant, constant: constant)
      spec.sparseEntries = sparseEntries
      def.tensors.append(spec)
    }

    r.context = "graph"
    let nIn = try r.count(minBytesEach: 4, max: maxTensors, "graph inputs")
    for _ in 0..<nIn { def.inputs.append(Int(try r.u32())) }
    let nOut = try r.count(minBytesEach: 4, max: maxTensors, "graph outputs")
    for _ in 0..<nOut { def.outputs.append(Int(try r.u32())) }

    def.nodes = try readOps(&r, "")
    if minor >= 2 && r.remaining >= 4 {
      // 1.2: subgraphs (control flow), after the main graph's ops (a file
      // marked newer than 1.1 that ends here has none).
      r.context = "subgraphs"
      let nSub = try r.count(minBytesEach: 16, max: maxSubgraphs, "subgraphs")
      for i in 0..<nSub {
        var sub = SubgraphDef(name: try r.string(max: maxNameBytes, "subgraph name"))
        let nIn = try r.count(minBytesEach: 4, max: maxTensors, "inputs of subgraph \(i)")
        for _ in 0..<nIn { sub.inputs.append(Int(try r.u32())) }
        let nOut = try r.count(minBytesEach: 4, max: maxTensors, "outputs of subgraph \(i)")
        for _ in 0..<nOut { sub.outputs.append(Int(try r.u32())) }
        sub.nodes = try readOps(&r, "subgraph \(i): ")
        def.subgraphs.append(sub)
      }
    }
    // Same minor version: the section must be used exactly. A newer minor may
    // append fields after these, which this reader skips.
    if minor <= versionMinor && r.remaining != 0 {
      throw .format("graph section has \(r.remaining) unexpected trailing bytes")
    }
    return def
  }

  /// An op list (the main graph's or a subgraph's); `ctx` prefixes errors.
  static func readOps(_ r: inout ByteReader, _ ctx: String) throws(TinfError) -> [Node] {
    let nOps = try r.count(minBytesEach: 12, max: maxOps, "\(ctx)ops")
    var nodes: [Node] = []
    nodes.reserveCapacity(nOps)
    for k in 0..<nOps {
      let code = try r.u16()
      guard let op = OpKind(rawValue: code) else {
        throw TinfError.unsupported("\(ctx)op \(k) has op code \(code), which this library does not know (newer file?)")
      }
      let nAttr = Int(try r.u16())
      guard nAttr <= maxAttrs else { throw TinfError.format("\(ctx)op \(k) (\(op.name)) has \(nAttr) attributes") }
      let nI = try r.count(minBytesEach: 4, max: maxOpArity, "inputs of \(ctx)op \(k)")
      var ins: [Int] = []
      for _ in 0..<nI { ins.append(Int(try r.i32())) }
      let nO = try r.count(minBytesEach: 4, max: maxOpArity, "outputs of \(ctx)op \(k)")
      var outs: [Int] = []
      for _ in 0..<nO { outs.append(Int(try r.u32())) }
      var attrs = Attributes()
      for _ in 0..<nAttr {
        let keyCode = try r.u16()
        let type = try r.u8()
        _ = try r.u8()
        guard let key = AttrKey(rawValue: keyCode) else {
          throw TinfError.unsupported("\(ctx)op \(k) (\(op.name)) has attribute key \(keyCode), unknown to this library")
        }
        let value: AttrValue
        switch type {
        case 1: value = .int(try r.i64())
        case 2: value = .float(try r.f32())
        case 3:
          let c = try r.count(minBytesEach: 8, max: maxAttrElements, "attribute \(key.name)")
          var xs: [Int64] = []
          xs.reserveCapacity(c)
          for _ in 0..<c { xs.append(try r.i64()) }
          value = .ints(xs)
        case 4:
          let c = try r.count(minBytesEach: 4, max: maxAttrElements, "attribute \(key.name)")
          var xs: [Float] = []
          xs.reserveCapacity(c)
          for _ in 0..<c { xs.append(try r.f32()) }
          value = .floats(xs)
        case 5: value = .string(try r.string("attribute \(key.name)"))
        default: throw TinfError.format("\(ctx)op \(k) (\(op.name)): attribute \(key.name) has unknown type \(type)")
        }
        guard attrs[key] == nil else { throw TinfError.format("\(ctx)op \(k) (\(op.name)): attribute \(key.name) given twice") }
        attrs[key] = value
      }
      nodes.append(Node(op: op, inputs: ins, outputs: outs, attrs: attrs))
    }
    return nodes
  }

  /// Serializes a graph and the constants' bytes (indexed like the tensors;
  /// nil for computed tensors). Constant ranges in `def` are ignored and
  /// recomputed: each constant lands on a 64-byte boundary.
  public static func write(_ def: GraphDef, constants: [[UInt8]?]) -> [UInt8] {
    // Lay out the data section first.
    // Constants that the sparse encoding at least halves are stored encoded
    // (those marked storeSparse whenever it makes them smaller).
    var ranges: [Range<Int>?] = []
    var encoded: [(data: [UInt8], entries: Int)?] = []
    var dataSize = 0
    for i in def.tensors.indices {
      if i < constants.count, let c = constants[i] {
        let t = def.tensors[i]
        let e = t.dtype.flatMap { d in
          t.shape.flatMap { SparseEncoding.encode(c, shape: $0, elemSize: d.size, whenSmaller: t.storeSparse) }
        }
        encoded.append(e)
        let n = e?.data.count ?? c.count
        let start = (dataSize + alignment - 1) / alignment * alignment
        ranges.append(start..<(start + n))
        dataSize = start + n
      } else {
        ranges.append(nil)
        encoded.append(nil)
      }
    }
    let anySparse = encoded.contains { $0 != nil }

    var b = ByteWriter()
    b.u32(UInt32(def.metadata.count))
    for (k, v) in def.metadata {
      b.string(k)
      b.string(v)
    }
    b.u32(UInt32(def.tensors.count))
    for (i, t) in def.tensors.enumerated() {
      b.string(t.name)
      b.u8(t.dtype?.rawValue ?? 0)
      let isConst = ranges[i] != nil
      b.u8((isConst ? 1 : 0) | (t.shape != nil ? 2 : 0) | (encoded[i] != nil ? 4 : 0))
      b.u8(UInt8(truncatingIfNeeded: t.shape?.count ?? 0))
      b.u8(0)
      for d in t.shape ?? [] { b.i64(Int64(d)) }
      if let q = t.quant {
        b.u8(1)
        b.i32(Int32(q.axis ?? -1))
        b.u32(UInt32(q.scales.count))
        for s in q.scales { b.f32(s) }
        for z in q.zeroPoints { b.i32(z) }
      } else {
        b.u8(0)
      }
      if let r = ranges[i] {
        b.u64(UInt64(r.lowerBound))
        b.u64(UInt64(r.count))
      }
      if let e = encoded[i] {
        b.u8(SparseEncoding.code)
        b.u8(0)
        b.u16(0)
        b.u64(UInt64(e.entries))
      }
    }
    b.u32(UInt32(def.inputs.count))
    for x in def.inputs { b.u32(UInt32(truncatingIfNeeded: x)) }
    b.u32(UInt32(def.outputs.count))
    for x in def.outputs { b.u32(UInt32(truncatingIfNeeded: x)) }
    writeOps(&b, def.nodes)
    if !def.subgraphs.isEmpty {
      b.u32(UInt32(def.subgraphs.count))
      for sub in def.subgraphs {
        b.string(sub.name)
        b.u32(UInt32(sub.inputs.count))
        for x in sub.inputs { b.u32(UInt32(truncatingIfNeeded: x)) }
        b.u32(UInt32(sub.outputs.count))
        for x in sub.outputs { b.u32(UInt32(truncatingIfNeeded: x)) }
        writeOps(&b, sub.nodes)
      }
    }
    let body = b.bytes

    var out = ByteWriter()
    out.bytes.reserveCapacity(headerSize + body.count + dataSize + alignment)
    out.bytes.append(contentsOf: magic)
    out.u16(versionMajor)
    out.u16(!def.subgraphs.isEmpty ? 2 : anySparse ? 1 : 0)
    out.u32(UInt32(headerSize))
    out.u32(0)
    let bodyOff = headerSize
    let dataOff = (bodyOff + body.count + alignment - 1) / alignment * alignment
    out.u64(UInt64(bodyOff))
    out.u64(UInt64(body.count))
    out.u64(UInt64(dataOff))
    out.u64(UInt64(dataSize))
    out.u64(UInt64(dataOff + dataSize))
    out.u64(0)
    out.bytes.append(contentsOf: body)
    out.pad(to: alignment)
    for i in def.tensors.indices {
      guard let r = ranges[i], let c = constants[i] else { continue }
      while out.bytes.count < dataOff + r.lowerBound { out.bytes.append(0) }
      out.bytes.append(contentsOf: encoded[i]?.data ?? c)
    }
    return out.bytes
  }

  static func writeOps(_ b: inout ByteWriter, _ nodes: [Node]) {
    b.u32(UInt32(nodes.count))
    for node in nodes {
      b.u16(node.op.rawValue)
      b.u16(UInt16(node.attrs.entries.count))
      b.u32(UInt32(node.inputs.count))
      for x in node.inputs { b.i32(Int32(truncatingIfNeeded: x)) }
      b.u32(UInt32(node.outputs.count))
      for x in node.outputs { b.u32(UInt32(truncatingIfNeeded: x)) }
      for (key, value) in node.attrs.entries {
        b.u16(key.rawValue)
        b.u8(value.typeCode)
        b.u8(0)
        switch value {
        case .int(let x): b.i64(x)
        case .float(let x): b.f32(x)
        case .ints(let xs):
          b.u32(UInt32(xs.count))
          for x in xs { b.i64(x) }
        case .floats(let xs):
          b.u32(UInt32(xs.count))
          for x in xs { b.f32(x) }
        case .string(let s): b.string(s)
        }
      }
    }
  }
}
